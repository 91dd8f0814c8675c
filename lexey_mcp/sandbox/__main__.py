"""`python -m lexey_mcp.sandbox [--host] [--port] [--delay]`."""

from __future__ import annotations

import argparse
import logging
import sys

from .config import SandboxConfig
from .server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lexey_mcp.sandbox", description="Run the Lexey + Lexi sandbox.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds between streamed events")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(args.host, args.port, SandboxConfig(delay=args.delay))


if __name__ == "__main__":
    sys.exit(main())
