"""`lexey-mcp test SUITE`: exit 0 when every run of every case passed, 1 when any failed, 2 for an invalid suite,
baseline or configuration (nothing is sent then) or a failed setup step (no case runs then).

With --baseline, 1 only for a new failure. Ctrl-C or SIGTERM writes every requested report with the runs that
finished, marked interrupted, then exits 130 or 143; --timeout does the same and exits 1 when a run failed so far
(with --baseline: a new failure), else 124 (as GNU `timeout` does): an incomplete suite never exits 0."""

from __future__ import annotations

import argparse
import functools
import logging
import shutil
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

from .. import interrupt
from ..client import LexeyClient
from ..config import Settings
from ..errors import LexeyConfigError, LexeyError, LexeyInputError
from ..events.marks import marking_test_runs
from ..events.store import store_for
from ..redaction import redact
from ..request_keys import secrets_for
from .compare import compare, read_baseline
from .html import html_report
from .output import Progress, junit_xml, text_report, write
from .parsing import load_suite
from .report import RunReport, SuiteReport
from .runner import OnConversation, SetupError, SuiteRun, execute, plan

PASSED, FAILED, UNUSABLE = 0, 1, 2
#: The exit status of a suite stopped by --timeout with no failure among the runs that finished.
TIMED_OUT = 124

Baseline = dict[str, float] | None


def _fail(message: str) -> int:
    print(f"lexey-mcp test: {message}", file=sys.stderr)
    return UNUSABLE


def run_test_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        run = plan(load_suite(args.suite), repeat=args.repeat, cases=args.case)
        baseline = _read_baseline(args.baseline)
    except LexeyInputError as exc:
        return _fail(str(exc))
    problem = _report_paths_problem(args)
    if problem is not None:
        return _fail(problem)
    interrupt.announce("lexey-mcp test: interrupted; writing the reports of the runs that finished")
    # On a signal the runs are cancelled (their upstream streams closed on the way out), the reports written.
    return interrupt.run(_run, args, settings, run, baseline)


def _read_baseline(path: Path | None) -> Baseline:
    if path is None:
        return None
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise LexeyInputError(f"cannot read the baseline {path}: {exc.strerror or exc}") from None
    return read_baseline(text, f"the baseline {path}")


def _report_paths_problem(args: argparse.Namespace) -> str | None:
    """What keeps a requested report from being written, found now rather than after a long run."""
    named: dict[Path, str] = {}
    for option, report in (("--junit", args.junit), ("--json", args.json), ("--html", args.html)):
        if report is None:
            continue
        if not report.parent.is_dir():
            return f"cannot write the report {report}: {report.parent} is not a directory"
        if report.is_dir():
            return f"cannot write the report {report}: it is a directory"
        first = named.setdefault(report.resolve(), option)
        if first != option:
            return f"{first} and {option} both name {report}: give each report its own file"
    return None


async def _run(args: argparse.Namespace, settings: Settings, run: SuiteRun, baseline: Baseline) -> int:
    title = run.suite.name or Path(run.suite.source).stem
    async with AsyncExitStack() as stack:
        client = await _client(stack, args, settings)
        # Replies may quote a key back: everything this command prints or writes is redacted of the keys in use.
        secrets = secrets_for(client.settings)
        finish = functools.partial(_finish, args, run, title, baseline, secrets)
        progress = Progress(args.repeat)
        on_conversation = _marking(stack, args, settings, title)

        async def on_run(done: int, total: int, case: str, index: int, report: RunReport) -> None:
            await progress(done, total, case, index, report.redacted(secrets))

        skipped = " (setup skipped)" if args.skip_setup else ""
        write(sys.stdout, f"{title}: running {run.suite.source}{skipped}\n")
        try:
            with anyio.move_on_after(args.timeout) as timer:
                await execute(
                    client,
                    run,
                    concurrency=args.concurrency,
                    setup=not args.skip_setup,
                    on_run=on_run,
                    on_conversation=on_conversation,
                )
        except SetupError as exc:
            finish()
            return _fail(redact(str(exc), secrets))
        except (LexeyConfigError, LexeyInputError) as exc:
            return _fail(redact(str(exc), secrets))
        except LexeyError as exc:  # stopped on the way (a rate limit): the runs that finished are reported
            stopped = redact(str(exc), secrets)
            finish(stopped)
            return _fail(stopped)
        except anyio.get_cancelled_exc_class():
            stopped_by = interrupt.received()
            if stopped_by is not None:  # the process exits with the signal's status once this has unwound
                finish(signal.Signals(stopped_by).name)
            raise
    return finish(f"time-out of {args.timeout:g}s" if timer.cancelled_caught else None)


def _marking(stack: AsyncExitStack, args: argparse.Namespace, settings: Settings, suite: str) -> OnConversation | None:
    """Each conversation a run makes, marked as the suite's in the deployment's event store, so the escalations it
    causes are listed as a test run's: when this command shares that store with the server receiving Lexey's webhooks
    (the feed is configured here too: LEXEY_WEBHOOK_SECRET or LEXEY_REDIS_URL). Not against the embedded sandbox,
    whose webhooks go nowhere."""
    if args.test_sandbox or (settings.webhook_secret is None and settings.redis_url is None):
        return None
    store = store_for(settings, settings.state_dir.expanduser())
    stack.push_async_callback(store.aclose)
    return marking_test_runs(lambda: store, suite)


async def _client(stack: AsyncExitStack, args: argparse.Namespace, settings: Settings) -> LexeyClient:
    """The Lexey client, against a fresh embedded sandbox with --sandbox."""
    sandbox = bool(args.test_sandbox)
    if sandbox:
        from ..sandbox import Sandbox, SandboxConfig  # only with --sandbox: it serves HTTP (uvicorn, starlette)

        if settings.log_level != "DEBUG":  # its start and stop lines are noise around a report
            for name in ("uvicorn.error", "lexey_mcp.sandbox"):
                logging.getLogger(name).setLevel(logging.WARNING)
        sb = await stack.enter_async_context(Sandbox(SandboxConfig(delay=args.delay)))
        settings = sb.settings(settings)
    return await stack.enter_async_context(LexeyClient(settings, trust_env=not sandbox))


def _failed(report: SuiteReport) -> bool:
    """A failure that makes the exit status 1: with a baseline, only a new one."""
    if report.baseline is not None:
        return bool(report.new_failures)
    return not all(case.passed for case in report.cases)


def _finish(
    args: argparse.Namespace,
    run: SuiteRun,
    title: str,
    baseline: Baseline,
    secrets: list[str],
    interrupted: str | None = None,
) -> int:
    """Print the report and write every report requested, redacted of `secrets`; the exit status."""
    report = run.report(interrupted).redacted(secrets)
    if baseline is not None:
        report = compare(report, baseline)
    # A terminal gets a table that fits; a CI log gets whole lines (the first failure is the point of the table).
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 10_000
    write(sys.stdout, f"\n{text_report(report, width=width)}\n")
    try:
        if args.junit is not None:
            args.junit.write_bytes(junit_xml(report, args.repeat, title))
        if args.json is not None:
            args.json.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
        if args.html is not None:
            args.html.write_text(html_report(report, title), encoding="utf-8")
    except OSError as exc:
        return _fail(f"cannot write the report: {exc}")
    if _failed(report):
        return FAILED
    return TIMED_OUT if interrupted else PASSED
