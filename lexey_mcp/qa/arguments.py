"""The `lexey-mcp test` arguments: light on purpose, since the command line is built on every start."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..sandbox_delay import add_delay_option

#: Runs (cases × repeats) one suite run takes at most, from `lexey-mcp test` and `run_test_suite` alike: each run is
#: a conversation upstream (two requests or more) and counts against LEXEY_MCP_RATE_LIMIT, and its report is kept.
MAX_RUNS = 500
#: Bounds a mistyped count cannot pass.
MAX_REPEAT = MAX_RUNS
MAX_CONCURRENCY = 64


def whole_number(maximum: int) -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to `maximum`, refused in the argument's own words otherwise."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = 0
        if not 1 <= number <= maximum:
            raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {maximum}, not {value!r}")
        return number

    return parse


def seconds(value: str) -> float:
    """An argparse type: a number of seconds greater than 0."""
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds greater than 0, not {value!r}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `test` subcommand's arguments (dests of their own: a server option given with a command is refused)."""
    parser.add_argument("suite", metavar="SUITE", help="the suite file (YAML or JSON)")
    parser.add_argument(
        "--sandbox", dest="test_sandbox", action="store_true", help="run against a fresh embedded sandbox"
    )
    add_delay_option(parser, help="with --sandbox: seconds between events")
    parser.add_argument("--skip-setup", action="store_true", help="do not run the suite's setup instructions")
    parser.add_argument("--case", action="append", default=[], metavar="NAME", help="run only this case (repeatable)")
    parser.add_argument(
        "--concurrency",
        type=whole_number(MAX_CONCURRENCY),
        default=4,
        metavar="N",
        help=f"runs at once (at most {MAX_CONCURRENCY})",
    )
    parser.add_argument(
        "--repeat",
        type=whole_number(MAX_REPEAT),
        default=1,
        metavar="N",
        help=f"runs per case, for a pass rate (at most {MAX_REPEAT})",
    )
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the JSON report")
    parser.add_argument("--html", type=Path, metavar="FILE", help="write the HTML report (one self-contained file)")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="OLD.json",
        help="compare with an earlier --json report; exit 1 only for new failures",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="stop the whole suite after this long and report the runs that finished (exit 1 with failures, else 124)",
    )
