"""Run a suite through `LexeyClient`: setup in order, then every case run concurrently (bounded), each run in a
fresh customer conversation, each reply checked against its turn's expectations.

The report is the JSON report of `lexey-mcp test --json` and the structured result of `run_test_suite`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import anyio

from ..client import LexeyClient
from ..errors import AuthenticationError, LexeyConfigError, LexeyError, LexeyInputError, PermissionDeniedError
from ..models import ChatResult
from ..observability import RateLimited
from ..request_keys import key_for
from .arguments import MAX_RUNS
from .matching import MATCH_SECONDS, one_budget_per_pattern, search
from .report import REQUEST_FAILED, CaseReport, Failure, RunReport, SuiteReport
from .suite import Case, Expect, Suite

logger = logging.getLogger("lexey_mcp.qa")

EXCERPT_CHARS = 160


#: Upstream answers that mean the key, not the agent, is wrong: they stop the whole suite as a configuration error.
KEY_REFUSED = (AuthenticationError, PermissionDeniedError)


class SetupError(LexeyError):
    """A setup instruction failed: the cases would test an agent that is not configured as the suite says."""


#: Called after each case run: (runs done, runs in all, case name, 0-based run index, the run).
OnRun = Callable[[int, int, str, int, RunReport], Awaitable[None]]


def excerpt(text: str, at: int = 0, length: int = 0) -> str:
    """A quoted slice of `text` of about EXCERPT_CHARS around `text[at:at + length]`, on one line."""
    start = max(0, min(at - EXCERPT_CHARS // 3, len(text) - EXCERPT_CHARS))
    end = min(len(text), max(start + EXCERPT_CHARS, at + length))
    piece = " ".join(text[start:end].split())
    return f'"{"…" if start else ""}{piece}{"…" if end < len(text) else ""}"'


async def check_reply(expect: Expect, reply: ChatResult, seconds: float, escalated: bool, turn: int) -> list[Failure]:
    """Every expectation of `expect` that `reply` (which took `seconds`; conversation now `escalated`) fails."""
    failures: list[Failure] = []
    text, folded = reply.text, reply.text.casefold()

    def fail(kind: str, detail: str) -> None:
        failures.append(Failure(turn=turn, expectation=kind, detail=detail))

    if reply.outcome != expect.outcome:
        why = reply.error.message if reply.error else reply.partial_reason
        got = f"{reply.outcome} ({why})" if why else reply.outcome
        fail("outcome", f"expected {expect.outcome}, got {got}; reply: {excerpt(text)}")
    missing = [s for s in expect.contains if s.casefold() not in folded]
    if missing:
        fail("contains", f"missing {', '.join(repr(s) for s in missing)}; reply: {excerpt(text)}")
    for forbidden in expect.not_contains:
        at = folded.find(forbidden.casefold())
        if at >= 0:
            fail("not_contains", f"found {forbidden!r}: {excerpt(text, at, len(forbidden))}")
    if expect.matches is not None:
        found = await search(expect.matches, text)
        if found is None:
            fail(
                "matches",
                f"/{expect.matches.pattern}/ gave no answer within {MATCH_SECONDS:g}s; reply: {excerpt(text)}",
            )
        elif not found:
            fail("matches", f"no match for /{expect.matches.pattern}/; reply: {excerpt(text)}")
    if expect.escalated is not None and expect.escalated != escalated:
        status = f"status {reply.conversation_status!r}" if reply.conversation_status else "no status event"
        state = "escalated" if escalated else "not escalated"
        want = "escalated" if expect.escalated else "not escalated"
        fail("escalated", f"expected {want}, conversation is {state} ({status}); reply: {excerpt(text)}")
    if expect.max_seconds is not None and seconds > expect.max_seconds:
        fail("max_seconds", f"took {seconds:.2f}s, limit {expect.max_seconds:g}s")
    return failures


async def run_case(client: LexeyClient, case: Case) -> RunReport:
    """One run of `case` in a fresh conversation. An upstream failure ends the run as a `request` failure; a refused
    key (KEY_REFUSED) is raised."""
    started = time.monotonic()
    failures: list[Failure] = []
    conversation_id: str | None = None
    status: str | None = None
    turn = 0
    try:
        conversation_id = await client.customer.create_conversation()
        for turn, step in enumerate(case.turns, 1):
            sent = time.monotonic()
            with anyio.move_on_after(step.expect.max_seconds) as limit:  # max_seconds: no waiting past it
                reply = await client.customer.send_message(conversation_id, step.say)
            seconds = time.monotonic() - sent
            if limit.cancelled_caught:
                detail = f"no reply within {step.expect.max_seconds:g}s; the turn was stopped, and the run with it"
                failures.append(Failure(turn=turn, expectation="max_seconds", detail=detail))
                break
            status = reply.conversation_status or status  # a reply without a status event leaves it as it was
            failures += await check_reply(step.expect, reply, seconds, status == "escalated", turn)
    except KEY_REFUSED:
        raise  # not the agent failing: nothing can pass with this key
    except LexeyError as exc:
        failures.append(Failure(turn=max(turn, 1), expectation=REQUEST_FAILED, detail=str(exc)))
    return RunReport(
        passed=not failures,
        conversation_id=conversation_id,
        seconds=round(time.monotonic() - started, 3),
        failures=failures,
    )


def select_cases(suite: Suite, names: Sequence[str]) -> list[Case]:
    """The cases named (all when none are), in suite order; an unknown name is an input error."""
    if not names:
        return list(suite.cases)
    known = {c.name for c in suite.cases}
    unknown = [n for n in names if n not in known]
    if unknown:
        listed = ", ".join(repr(c.name) for c in suite.cases)
        raise LexeyInputError(f"No case named {', '.join(repr(n) for n in unknown)} in {suite.source}: {listed}.")
    return [c for c in suite.cases if c.name in names]


async def run_setup(client: LexeyClient, instructions: Sequence[str]) -> list[str]:
    """The setup instructions in order, in one management conversation; the first that fails stops the run. The
    management agent's replies, in order."""
    i = 0
    replies: list[str] = []
    try:
        conversation_id = await client.management.create_conversation()
        for i, instruction in enumerate(instructions, 1):
            reply = await client.management.send_message(conversation_id, instruction)
            logger.info("setup %d/%d: %s", i, len(instructions), excerpt(reply.text))
            if reply.outcome == "complete":
                replies.append(reply.text)
                continue
            why = reply.error.message if reply.error else reply.partial_reason or reply.outcome
            raise SetupError(f"Setup instruction {i} did not complete ({why}): {instruction[:200]!r}")
    except SetupError:
        raise
    except LexeyError as exc:
        step = f"instruction {i}" if i else "(creating the management conversation)"
        raise SetupError(f"Setup {step} failed: {exc}") from None
    return replies


async def run_suite(
    client: LexeyClient,
    suite: Suite,
    *,
    repeat: int = 1,
    concurrency: int = 4,
    cases: Sequence[str] = (),
    setup: bool = True,
    on_run: OnRun | None = None,
) -> SuiteReport:
    """Run `suite`: keys checked and cases selected before anything is sent, then setup, then every case
    `repeat` times with at most `concurrency` runs at once. A refused key stops it all with `LexeyConfigError`."""
    if repeat < 1 or concurrency < 1:
        raise LexeyInputError("repeat and concurrency must be at least 1.")
    selected = select_cases(suite, cases)
    if len(selected) * repeat > MAX_RUNS:
        raise LexeyInputError(
            f"Nothing was sent: {len(selected)} cases run {repeat} times would be {len(selected) * repeat} runs, and "
            f"one suite run takes at most {MAX_RUNS}. Run fewer cases, or fewer repeats."
        )
    key_for(client.settings, "customer")
    setup_replies: list[str] = []
    if setup and suite.setup:
        try:  # the key setup will use: in hosted mode, the request's own
            key_for(client.settings, "management")
        except LexeyConfigError as exc:
            raise LexeyConfigError(f"This suite has setup instructions, which need the management key. {exc}") from None
        setup_replies = await run_setup(client, suite.setup)
    runs: dict[str, list[RunReport | None]] = {c.name: [None] * repeat for c in selected}
    total = len(selected) * repeat
    done = 0
    reporting = anyio.Lock()
    # Run-major order: with repeats, every case gets its first run before any gets a second.
    pending = ((case, index) for index in range(repeat) for case in selected)

    refused: LexeyError | None = None

    async def worker() -> None:
        nonlocal done, refused
        for case, index in pending:  # shared by the workers: each run is taken once
            if refused is not None:
                return
            try:
                await client.observer.charge("customer", client.settings)  # each run counts against the key
            except RateLimited as exc:  # no new runs; those under way finish
                refused = exc
                return
            try:
                report = await run_case(client, case)
            except KEY_REFUSED as exc:
                refused = exc
                group.cancel_scope.cancel()
                return
            runs[case.name][index] = report
            async with reporting:  # one report at a time, so that `done` (MCP progress) only ever increases
                done += 1
                if on_run is not None:
                    await on_run(done, total, case.name, index, report)

    with one_budget_per_pattern():
        async with anyio.create_task_group() as group:
            for _ in range(min(concurrency, total)):
                group.start_soon(worker)
    if isinstance(refused, RateLimited):
        raise LexeyError(f"The suite stopped after {done} of {total} runs: {refused}")
    if refused is not None:
        raise LexeyConfigError(f"The suite stopped: {refused}")
    reports = []
    for case in selected:
        finished = [r for r in runs[case.name] if r is not None]
        passed = sum(r.passed for r in finished)
        reports.append(
            CaseReport(
                name=case.name,
                passed=passed == len(finished),
                pass_rate=round(passed / len(finished), 4),
                flaky=0 < passed < len(finished),
                runs=finished,
            )
        )
    return SuiteReport(name=suite.name, passed=all(c.passed for c in reports), setup=setup_replies, cases=reports)
