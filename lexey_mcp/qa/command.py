"""`lexey-mcp test SUITE`: exit 0 when every run of every case passed, 1 when any failed, 2 for an invalid suite
or configuration (nothing is sent then)."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from .. import interrupt
from ..client import LexeyClient
from ..config import Settings
from ..errors import LexeyConfigError, LexeyInputError
from .output import Progress, junit_xml, summary_table, write
from .report import SuiteReport
from .runner import SetupError, run_suite
from .suite import Suite, load_suite

PASSED, FAILED, UNUSABLE = 0, 1, 2


def _fail(message: str) -> int:
    print(f"lexey-mcp test: {message}", file=sys.stderr)
    return UNUSABLE


def run_test_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        suite = load_suite(args.suite)
    except LexeyInputError as exc:
        return _fail(str(exc))
    reports = [path for path in (args.junit, args.json) if path is not None]
    for report in reports:  # found out now, not after a long run whose report would be lost
        if not report.parent.is_dir():
            return _fail(f"cannot write the report {report}: {report.parent} is not a directory")
        if report.is_dir():
            return _fail(f"cannot write the report {report}: it is a directory")
    if len(reports) == 2 and reports[0].resolve() == reports[1].resolve():
        return _fail(f"--junit and --json both name {reports[0]}: give each report its own file")
    interrupt.announce("lexey-mcp test: interrupted")
    # On a signal the runs are cancelled, their upstream streams closed on the way out, and no report is written.
    return interrupt.run(_run, args, settings, suite)


async def _run(args: argparse.Namespace, settings: Settings, suite: Suite) -> int:
    sandbox = bool(args.test_sandbox)
    async with AsyncExitStack() as stack:
        if sandbox:
            from ..sandbox import Sandbox, SandboxConfig

            if settings.log_level != "DEBUG":  # its start and stop lines are noise around a report
                for name in ("uvicorn.error", "lexey_mcp.sandbox"):
                    logging.getLogger(name).setLevel(logging.WARNING)
            sb = await stack.enter_async_context(Sandbox(SandboxConfig(delay=args.delay)))
            settings = sb.settings(settings)
        client = await stack.enter_async_context(LexeyClient(settings, trust_env=not sandbox))
        title = suite.name or Path(suite.source).stem
        write(sys.stdout, f"{title}: running {suite.source}" + (" (setup skipped)" if args.skip_setup else "") + "\n")
        try:
            report = await run_suite(
                client,
                suite,
                repeat=args.repeat,
                concurrency=args.concurrency,
                cases=args.case,
                setup=not args.skip_setup,
                on_run=Progress(args.repeat),
            )
        except (LexeyConfigError, LexeyInputError, SetupError) as exc:
            return _fail(str(exc))
    return _finish(args, report, title)


def _finish(args: argparse.Namespace, report: SuiteReport, title: str) -> int:
    # A terminal gets a table that fits; a CI log gets whole lines (the first failure is the point of the table).
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 10_000
    write(sys.stdout, f"\n{summary_table(report, width=width)}\n")
    try:
        if args.junit is not None:
            args.junit.write_bytes(junit_xml(report, args.repeat, title))
        if args.json is not None:
            args.json.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        return _fail(f"cannot write the report: {exc}")
    return PASSED if report.passed else FAILED
