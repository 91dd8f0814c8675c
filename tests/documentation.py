"""The documentation as tests read it: README.md, the newcomer's page, and the files in docs/ it links to."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
#: Each Markdown file in docs/, by its path from the repository root (`docs/hosting.md`).
DOCS = {path.relative_to(REPO).as_posix(): path.read_text() for path in sorted((REPO / "docs").glob("*.md"))}
#: README.md and every file in docs/, by path.
EVERY_PAGE = {"README.md": README, **DOCS}


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
