"""`python -m lexey_mcp.sandbox [--host] [--port] [--delay] [--webhook-url] [--webhook-secret]`: the same command as
`lexey-mcp sandbox` (one parser, one way to stop)."""

from __future__ import annotations

import sys

from ..__main__ import main as lexey_mcp


def main(argv: list[str] | None = None) -> int:
    return lexey_mcp(["sandbox", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
