"""Regenerate docs/qa-report.png: the HTML report of examples/suites/fails-on-purpose.yaml (run twice per case
against the embedded sandbox), as headless Chromium shows it in an 820×1100 window.

    python scripts/qa_report_screenshot.py [OUT.png]

Needs Debian's chromium (/usr/bin/chromium). The conversation ids and durations differ on every run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "examples" / "suites" / "fails-on-purpose.yaml"
WINDOW = "820,1100"


def main(out: Path) -> int:
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        test = [sys.executable, "-m", "lexey_mcp", "test", str(SUITE), "--sandbox", "--delay", "0", "--repeat", "2"]
        done = subprocess.run([*test, "--html", str(page)], capture_output=True, text=True, check=False)
        if done.returncode != 1:  # the suite fails on purpose
            print(done.stdout + done.stderr, file=sys.stderr)
            return 1
        shot = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp}/profile"]
        shot += [f"--screenshot={out.resolve()}", f"--window-size={WINDOW}", "--hide-scrollbars", page.as_uri()]
        subprocess.run(shot, capture_output=True, check=True, timeout=120)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "qa-report.png"))
