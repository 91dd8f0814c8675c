"""Run a suite through `LexeyClient`: setup in order, then every case run concurrently (bounded), each run in a
fresh customer conversation, each reply checked against its turn's expectations.

The report is the JSON report of `lexey-mcp test --json` and the structured result of `run_test_suite`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio

from ..client import LexeyClient
from ..errors import AuthenticationError, LexeyConfigError, LexeyError, LexeyInputError, PermissionDeniedError
from ..management import not_applied
from ..models import ChatResult
from ..observability import RateLimited
from ..request_keys import key_for
from .arguments import MAX_RUNS
from .matching import MATCH_SECONDS, one_budget_per_pattern, search
from .report import REQUEST_FAILED, CaseReport, Check, Failure, RunReport, SetupStep, SuiteReport, TurnReport
from .suite import Case, Expect, Suite, Turn

logger = logging.getLogger("lexey_mcp.qa")

EXCERPT_CHARS = 160


#: Upstream answers that mean the key, not the agent, is wrong: they stop the whole suite as a configuration error.
KEY_REFUSED = (AuthenticationError, PermissionDeniedError)


class SetupError(LexeyError):
    """A setup instruction failed, was not applied, or its reply missed its expectations: the cases would test an
    agent that is not configured as the suite says, so none runs."""


#: Called after each case run: (runs done, runs in all, case name, 0-based run index, the run).
OnRun = Callable[[int, int, str, int, RunReport], Awaitable[None]]
#: Hears of each conversation a run makes (its case's name, the conversation's id) before anything is said in it.
OnConversation = Callable[[str, str], Awaitable[None]]


def excerpt(text: str, at: int = 0, length: int = 0) -> str:
    """A quoted slice of `text` of about EXCERPT_CHARS around `text[at:at + length]`, on one line."""
    start = max(0, min(at - EXCERPT_CHARS // 3, len(text) - EXCERPT_CHARS))
    end = min(len(text), max(start + EXCERPT_CHARS, at + length))
    piece = " ".join(text[start:end].split())
    return f'"{"…" if start else ""}{piece}{"…" if end < len(text) else ""}"'


def checks(expect: Expect) -> list[Check]:
    """Every expectation `expect` sets, described: what a transcript marks at its turn."""
    found = [Check(expectation="outcome", wanted=f"outcome {expect.outcome}")]
    if expect.contains:
        found.append(Check(expectation="contains", wanted="contains " + ", ".join(map(repr, expect.contains))))
    if expect.not_contains:
        found.append(
            Check(expectation="not_contains", wanted="does not contain " + ", ".join(map(repr, expect.not_contains)))
        )
    if expect.matches is not None:
        found.append(Check(expectation="matches", wanted=f"matches /{expect.matches.pattern}/"))
    if expect.escalated is not None:
        found.append(Check(expectation="escalated", wanted="escalated" if expect.escalated else "not escalated"))
    if expect.max_seconds is not None:
        found.append(Check(expectation="max_seconds", wanted=f"within {expect.max_seconds:g}s"))
    return found


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


async def run_case(client: LexeyClient, case: Case, on_conversation: OnConversation | None = None) -> RunReport:
    """One run of `case` in a fresh conversation, with its transcript. An upstream failure ends the run as a
    `request` failure; a refused key (KEY_REFUSED) is raised."""
    started = time.monotonic()
    failures: list[Failure] = []
    transcript: list[TurnReport] = []
    conversation_id: str | None = None
    status: str | None = None
    turn = 0
    try:
        conversation_id = await client.customer.create_conversation()
        if on_conversation is not None:
            await on_conversation(case.name, conversation_id)
        for turn, step in enumerate(case.turns, 1):
            sent = time.monotonic()
            with anyio.move_on_after(step.expect.max_seconds) as limit:  # max_seconds: no waiting past it
                reply = await client.customer.send_message(conversation_id, step.say)
            seconds = time.monotonic() - sent
            if limit.cancelled_caught:
                detail = f"no reply within {step.expect.max_seconds:g}s; the turn was stopped, and the run with it"
                failures.append(Failure(turn=turn, expectation="max_seconds", detail=detail))
                transcript.append(TurnReport(say=step.say, reply="", seconds=round(seconds, 3), escalated=False))
                break
            status = reply.conversation_status or status  # a reply without a status event leaves it as it was
            escalated = status == "escalated"
            failures += await check_reply(step.expect, reply, seconds, escalated, turn)
            transcript.append(_turn_report(step, reply.text, seconds, escalated))
    except KEY_REFUSED:
        raise  # not the agent failing: nothing can pass with this key
    except LexeyError as exc:
        failures.append(Failure(turn=max(turn, 1), expectation=REQUEST_FAILED, detail=str(exc)))
    return RunReport(
        passed=not failures,
        conversation_id=conversation_id,
        seconds=round(time.monotonic() - started, 3),
        failures=failures,
        turns=transcript,
    )


def _turn_report(step: Turn, reply: str, seconds: float, escalated: bool) -> TurnReport:
    return TurnReport(
        say=step.say, reply=reply, seconds=round(seconds, 3), escalated=escalated, checks=checks(step.expect)
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


async def run_setup(client: LexeyClient, steps: Sequence[Turn], done: list[SetupStep]) -> None:
    """The setup steps in order, in one management conversation, each appended to `done` with its reply. The first
    that fails, is not applied (`management.not_applied`) or misses its expectations raises `SetupError`."""
    try:
        conversation_id = await client.management.create_conversation()
    except LexeyError as exc:
        raise SetupError(f"Setup failed creating the management conversation: {exc}") from None
    for i, step in enumerate(steps, 1):
        sent = time.monotonic()
        try:
            with anyio.move_on_after(step.expect.max_seconds) as limit:  # max_seconds: no waiting past it
                reply = await client.management.send_message(conversation_id, step.say)
        except LexeyError as exc:
            done.append(SetupStep(instruction=step.say, reply="", outcome="request failed"))
            raise SetupError(f"Setup step {i} (line {step.line}) failed: {exc}") from None
        if limit.cancelled_caught:
            late = Failure(turn=i, expectation="max_seconds", detail=f"no reply within {step.expect.max_seconds:g}s")
            done.append(SetupStep(instruction=step.say, reply="", outcome="expectation failed", failures=[late]))
            raise SetupError(f"Setup step {i} (line {step.line}) got no reply within {step.expect.max_seconds:g}s")
        logger.info("setup %d/%d: %s", i, len(steps), excerpt(reply.text))
        failures = await check_reply(step.expect, reply, time.monotonic() - sent, False, i)
        if not_applied(reply.text):
            done.append(SetupStep(instruction=step.say, reply=reply.text, outcome="not applied", failures=failures))
            why = "was not applied"
        elif failures:
            done.append(
                SetupStep(instruction=step.say, reply=reply.text, outcome="expectation failed", failures=failures)
            )
            why = "missed its expectations (" + "; ".join(f"{f.expectation}: {f.detail}" for f in failures) + ")"
        else:
            done.append(SetupStep(instruction=step.say, reply=reply.text, outcome="applied"))
            continue
        raise SetupError(
            f"Setup step {i} (line {step.line}) {why}, so no case ran: {excerpt(step.say)}; "
            f"the management agent replied: {excerpt(reply.text)}"
        )


@dataclass
class SuiteRun:
    """A suite run as it goes: `report` makes the report of the runs finished so far at any moment (an interrupted
    run's too)."""

    suite: Suite
    cases: list[Case]
    repeat: int
    setup: list[SetupStep] = field(default_factory=list)
    runs: dict[str, list[RunReport | None]] = field(default_factory=dict)
    done: int = 0

    def __post_init__(self) -> None:
        self.runs = {c.name: [None] * self.repeat for c in self.cases}

    @property
    def total(self) -> int:
        return len(self.cases) * self.repeat

    def report(self, interrupted: str | None = None) -> SuiteReport:
        """The report of every run finished; cases with none are left out when the run was `interrupted` (why)."""
        reports = []
        for case in self.cases:
            finished = [r for r in self.runs[case.name] if r is not None]
            if not finished:
                continue
            passed = sum(r.passed for r in finished)
            rate = round(passed / len(finished), 4)
            reports.append(
                CaseReport(name=case.name, passed=rate == 1, pass_rate=rate, flaky=0 < rate < 1, runs=finished)
            )
        if interrupted is not None:
            interrupted = f"{interrupted} after {self.done} of {self.total} runs"
        passed = interrupted is None and all(c.passed for c in reports) and len(reports) == len(self.cases)
        return SuiteReport(
            name=self.suite.name, passed=passed, setup=self.setup, cases=reports, interrupted=interrupted
        )


def plan(suite: Suite, *, repeat: int = 1, cases: Sequence[str] = ()) -> SuiteRun:
    """A run of `suite` (the `cases` named, or all) `repeat` times; refused before anything is sent when too big."""
    if repeat < 1:
        raise LexeyInputError("repeat must be at least 1.")
    selected = select_cases(suite, cases)
    if len(selected) * repeat > MAX_RUNS:
        raise LexeyInputError(
            f"Nothing was sent: {len(selected)} cases run {repeat} times would be {len(selected) * repeat} runs, and "
            f"one suite run takes at most {MAX_RUNS}. Run fewer cases, or fewer repeats."
        )
    return SuiteRun(suite, selected, repeat)


async def execute(
    client: LexeyClient,
    run: SuiteRun,
    *,
    concurrency: int = 4,
    setup: bool = True,
    on_run: OnRun | None = None,
    on_conversation: OnConversation | None = None,
) -> None:
    """Keys checked, then setup, then every case `run.repeat` times with at most `concurrency` runs at once, each
    finished run recorded in `run`. A refused key stops it all with `LexeyConfigError`."""
    if concurrency < 1:
        raise LexeyInputError("concurrency must be at least 1.")
    key_for(client.settings, "customer")
    if setup and run.suite.setup:
        try:  # the key setup will use: in hosted mode, the request's own
            key_for(client.settings, "management")
        except LexeyConfigError as exc:
            raise LexeyConfigError(f"This suite has setup instructions, which need the management key. {exc}") from None
        await run_setup(client, run.suite.setup, run.setup)
    refused = await _run_cases(client, run, concurrency, on_run, on_conversation)
    if isinstance(refused, RateLimited):
        raise LexeyError(f"The suite stopped after {run.done} of {run.total} runs: {refused}")
    if refused is not None:
        raise LexeyConfigError(f"The suite stopped: {refused}")


async def _run_cases(
    client: LexeyClient, run: SuiteRun, concurrency: int, on_run: OnRun | None, on_conversation: OnConversation | None
) -> LexeyError | None:
    """Every case run, `concurrency` at once; the error that stopped them early (rate limit, refused key), if any."""
    reporting = anyio.Lock()
    # Run-major order: with repeats, every case gets its first run before any gets a second.
    pending = ((case, index) for index in range(run.repeat) for case in run.cases)
    refused: LexeyError | None = None

    async def worker() -> None:
        nonlocal refused
        for case, index in pending:  # shared by the workers: each run is taken once
            if refused is not None:
                return
            try:
                await client.observer.charge("customer", client.settings)  # each run counts against the key
            except RateLimited as exc:  # no new runs; those under way finish
                refused = exc
                return
            try:
                report = await run_case(client, case, on_conversation)
            except KEY_REFUSED as exc:
                refused = exc
                group.cancel_scope.cancel()
                return
            run.runs[case.name][index] = report
            async with reporting:  # one report at a time, so that `done` (MCP progress) only ever increases
                run.done += 1
                if on_run is not None:
                    await on_run(run.done, run.total, case.name, index, report)

    with one_budget_per_pattern():
        async with anyio.create_task_group() as group:
            for _ in range(min(concurrency, run.total)):
                group.start_soon(worker)
    return refused


async def run_suite(
    client: LexeyClient,
    suite: Suite,
    *,
    repeat: int = 1,
    concurrency: int = 4,
    cases: Sequence[str] = (),
    setup: bool = True,
    on_run: OnRun | None = None,
    on_conversation: OnConversation | None = None,
) -> SuiteReport:
    """Run `suite` (`plan`, then `execute`) and report it."""
    run = plan(suite, repeat=repeat, cases=cases)
    await execute(client, run, concurrency=concurrency, setup=setup, on_run=on_run, on_conversation=on_conversation)
    return run.report()
