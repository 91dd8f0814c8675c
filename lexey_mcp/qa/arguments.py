"""The `lexey-mcp test` arguments: light on purpose, since the command line is built on every start."""

from __future__ import annotations

import argparse
from pathlib import Path


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value!r}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `test` subcommand's arguments (its --sandbox leaves a global `--sandbox` alone)."""
    parser.add_argument("suite", metavar="SUITE", help="the suite file (YAML or JSON)")
    parser.add_argument(
        "--sandbox", action="store_true", default=argparse.SUPPRESS, help="run against a fresh embedded sandbox"
    )
    parser.add_argument("--skip-setup", action="store_true", help="do not run the suite's setup instructions")
    parser.add_argument("--case", action="append", default=[], metavar="NAME", help="run only this case (repeatable)")
    parser.add_argument("--concurrency", type=positive_int, default=4, metavar="N", help="runs at once (default 4)")
    parser.add_argument("--repeat", type=positive_int, default=1, metavar="N", help="runs per case (default 1)")
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the JSON report")
