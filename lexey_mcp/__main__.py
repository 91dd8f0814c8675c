"""`lexey-mcp` and `python -m lexey_mcp`: signals are handled before anything heavy is imported."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import interrupt


def main(argv: Sequence[str] | None = None) -> int:
    interrupt.install()
    from .cli import main as cli_main  # after `install`: a Ctrl-C during these imports exits quietly

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
