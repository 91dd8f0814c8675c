"""The command line's own answers: `--version`, `--help`, a command's `--help`, an argument error.

    .venv/bin/python -m benchmarks.cli_start [--runs N] [--write]

hyperfine (installed on this machine) runs each command of the installed `lexey-mcp` script and `python -c pass`
(the interpreter's own start, the floor) in one run, interleaved by hyperfine's rounds; medians of wall time.
None of these answers may import MCP, pydantic or an HTTP stack (tests/test_cli.py checks that).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._common import header, write_section

LEXEY = str(Path(sys.executable).with_name("lexey-mcp"))
COMMANDS = {
    "`python -c pass` (the floor)": f"{sys.executable} -c pass",
    "`lexey-mcp --version`": f"{LEXEY} --version",
    "`lexey-mcp --help`": f"{LEXEY} --help",
    "`lexey-mcp test --help`": f"{LEXEY} test --help",
    "`lexey-mcp sandbox --help`": f"{LEXEY} sandbox --help",
    "`lexey-mcp --toolsets nope` (an argument error, exit 2)": f"{LEXEY} --toolsets nope",
}


def run(runs: int) -> str:
    hyperfine = shutil.which("hyperfine")
    if hyperfine is None:
        raise SystemExit("hyperfine is not installed")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        options = ["-N", "-i", "--warmup", "3", "--runs", str(runs), "--export-json", str(out), "--style", "none"]
        subprocess.run(
            [hyperfine, *options, *COMMANDS.values()],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        results = json.loads(out.read_text())["results"]
    floor = statistics.median(results[0]["times"])
    floor_cpu = results[0]["user"] + results[0]["system"]
    rows = [
        "| command | median wall | min | vs `python -c pass` | above it | mean CPU (user + system) | vs the floor's |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in zip(COMMANDS, results, strict=True):
        median = statistics.median(result["times"])
        cpu = result["user"] + result["system"]
        rows.append(
            f"| {name} | {median * 1e3:.0f} ms | {min(result['times']) * 1e3:.0f} ms | **{median / floor:.1f}×** | "
            f"+{(median - floor) * 1e3:.0f} ms | {cpu * 1e3:.0f} ms | {cpu / floor_cpu:.1f}× |"
        )
    return (
        "\n".join(rows)
        + f"\n\n{runs} runs each after 3 warm-ups (hyperfine -N). Target: ≤ 150 ms on an idle machine. Load average "
        f"at the start: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min).\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = parser.parse_args()
    text = header("## 9. The command line's own answers") + "\n" + run(args.runs)
    print(text)
    if args.write:
        write_section("cli_start", text)


if __name__ == "__main__":
    main()
