"""Running suites against the sandbox: each expectation kind passing and failing, setup, concurrency, repeats,
flakiness, upstream failures, keys checked before anything is sent, and cancellation closing upstream streams."""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from lexey_mcp.client import LexeyClient
from lexey_mcp.errors import LexeyConfigError, LexeyInputError
from lexey_mcp.models import ChatResult, StreamError
from lexey_mcp.qa.matching import MATCH_SECONDS, MAX_SEARCHES, one_budget_per_pattern, search
from lexey_mcp.qa.output import Progress, junit_xml, summary_table
from lexey_mcp.qa.parsing import parse_suite
from lexey_mcp.qa.report import RunReport, SuiteReport
from lexey_mcp.qa.runner import SetupError, check_reply, excerpt, execute, plan, run_suite
from lexey_mcp.qa.suite import Expect
from lexey_mcp.sandbox import Fault, Sandbox
from tests.conftest import cancel_once_streaming, sandbox_settings_for
from tests.streams import CUSTOMER_KEY, MANAGEMENT_KEY
from tests.waiting import sample_every

pytestmark = pytest.mark.anyio

PRICING = "Add a knowledge article about pricing: Pro is $12/month with unlimited projects."
RULE = "Always escalate if a customer mentions refunds."


@pytest.fixture
async def lexey(sandbox: Sandbox) -> AsyncIterator[LexeyClient]:
    async with LexeyClient(sandbox_settings_for(sandbox), trust_env=False) as client:
        yield client


def reply(text: str = "", **fields: Any) -> ChatResult:
    return ChatResult(text=text, conversation_id="c", outcome=fields.pop("outcome", "complete"), **fields)


async def kinds(expect: Expect, result: ChatResult, seconds: float = 0.1, escalated: bool = False) -> list[str]:
    return [f.expectation for f in await check_reply(expect, result, seconds, escalated, turn=2)]


@pytest.mark.parametrize(
    ("expect", "passing", "failing"),
    [
        (Expect(contains=("$12", "PRO")), reply("Pro is $12"), reply("Pro is twelve dollars")),
        (Expect(not_contains=("SORRY",)), reply("Pro is $12"), reply("Sorry, no idea")),
        # a regex is searched in a child process, killed past its time
        pytest.param(Expect(matches=re.compile(r"\$\d+")), reply("$12"), reply("12 dollars"), marks=pytest.mark.e2e),
        (Expect(outcome="error"), reply("x", outcome="error"), reply("x")),
        (Expect(outcome="partial"), reply("x", outcome="partial"), reply("x", outcome="error")),
    ],
    ids=["contains", "not_contains", "matches", "outcome-error", "outcome-partial"],
)
async def test_each_text_expectation_passes_and_fails(expect: Expect, passing: ChatResult, failing: ChatResult) -> None:
    assert await kinds(expect, passing) == []
    name = (
        "outcome"
        if expect.outcome != "complete"
        else next(k for k in ("contains", "not_contains", "matches") if getattr(expect, k))
    )
    assert await kinds(expect, failing) == [name]


async def test_escalated_and_max_seconds_pass_and_fail() -> None:
    assert await kinds(Expect(escalated=True), reply("handing over"), escalated=True) == []
    assert await kinds(Expect(escalated=True), reply("hi"), escalated=False) == ["escalated"]
    assert await kinds(Expect(escalated=False), reply("hi"), escalated=False) == []
    assert await kinds(Expect(escalated=False), reply("bye"), escalated=True) == ["escalated"]
    assert await kinds(Expect(max_seconds=2), reply("hi"), seconds=1.9) == []
    assert await kinds(Expect(max_seconds=2), reply("hi"), seconds=2.5) == ["max_seconds"]


async def test_failure_details_quote_the_part_of_the_reply_that_failed() -> None:
    long_reply = "Hello. " * 60 + "I'm sorry, I can't help with that. " + "Bye. " * 60
    (found,) = await check_reply(Expect(not_contains=("i'M SORRY",)), reply(long_reply), 0.1, False, 3)
    assert (found.turn, found.expectation) == (3, "not_contains")
    assert found.detail.startswith('found "i\'M SORRY": "…')
    assert "I'm sorry, I can't help" in found.detail
    assert len(found.detail) < 260
    (missing,) = await check_reply(Expect(contains=("$12", "Pro")), reply("Our Pro plan\n is great"), 0.1, False, 1)
    assert missing.detail == "missing '$12'; reply: \"Our Pro plan is great\""
    (outcome,) = await check_reply(
        Expect(), reply("Half a", outcome="error", error=StreamError(message="boom")), 0, False, 1
    )
    assert outcome.detail == 'expected complete, got error (boom); reply: "Half a"'
    (partial,) = await check_reply(Expect(), reply("Half", outcome="partial", partial_reason="timeout"), 0, False, 1)
    assert partial.detail == 'expected complete, got partial (timeout); reply: "Half"'
    (slow,) = await check_reply(Expect(max_seconds=1), reply("ok"), 1.5, False, 1)
    assert slow.detail == "took 1.50s, limit 1s"
    assert excerpt("") == '""'


@pytest.mark.e2e
async def test_a_regex_that_backtracks_without_end_fails_instead_of_hanging() -> None:
    catastrophic = re.compile(r"(a+)+$")
    assert await search(catastrophic, "aaaa") is True
    with anyio.fail_after(MATCH_SECONDS + 5):  # `re` alone would search this for longer than the universe exists
        assert await search(catastrophic, "a" * 4_000_000 + "b", seconds=0.3) is None
    assert await search(re.compile("(?i)PRO"), "pro") is True
    assert await search(re.compile(r"\$\d+"), "twelve dollars") is False


def children() -> list[str] | None:
    """The ids of the child processes this thread started (Linux), or None without /proc."""
    listing = Path(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/children")
    return listing.read_text().split() if listing.exists() else None


@pytest.mark.e2e
async def test_searches_at_once_are_bounded_and_killed_after_their_time() -> None:
    if children() is None:
        pytest.skip("needs Linux /proc to count child processes")
    peak = 0

    def watch() -> None:
        nonlocal peak
        peak = max(peak, len(children() or []))

    catastrophic = re.compile(r"(a+)+$")
    async with anyio.create_task_group() as group:
        group.start_soon(sample_every, 0.005, watch)
        async with anyio.create_task_group() as searches:
            for _ in range(2 * MAX_SEARCHES):
                searches.start_soon(search, catastrophic, "a" * 100 + "b", 0.3)
        group.cancel_scope.cancel()
    assert peak == MAX_SEARCHES
    assert children() == []  # every child killed and reaped


async def test_max_seconds_stops_a_turn_that_takes_longer(sandbox: Sandbox, lexey: LexeyClient) -> None:
    suite = parse_suite(
        "cases:\n  - name: slow\n    turns:\n      - {say: hi, expect: {max_seconds: 0.2}}\n      - {say: anyone}\n"
    )
    sandbox.inject(Fault(target="customer", stall_after=1, stall_seconds=30))
    with anyio.fail_after(10):
        report = await run_suite(lexey, suite)
    (run,) = report.cases[0].runs
    assert [(f.turn, f.expectation) for f in run.failures] == [(1, "max_seconds")]
    assert run.failures[0].detail == "no reply within 0.2s; the turn was stopped, and the run with it"
    assert run.seconds < 10
    with anyio.fail_after(2):
        await sandbox.wait_for_stream_closed(1)
    assert sandbox.stats.streams_started == 1  # the second turn was not sent


async def test_max_seconds_stops_a_setup_step_that_takes_longer(sandbox: Sandbox, lexey: LexeyClient) -> None:
    suite = parse_suite(
        "setup:\n  - {say: Our business is Acme., expect: {max_seconds: 0.2}}\n"
        "cases:\n  - name: one\n    turns: [{say: hi}]\n"
    )
    sandbox.inject(Fault(target="management", stall_after=1, stall_seconds=30))
    run = plan(suite)
    with anyio.fail_after(10), pytest.raises(SetupError, match=r"^Setup step 1 \(line 2\) got no reply within 0.2s$"):
        await execute(lexey, run)
    assert [(s.outcome, [f.expectation for f in s.failures]) for s in run.setup] == [
        ("expectation failed", ["max_seconds"])
    ]
    assert run.done == 0  # no case ran


async def test_progress_is_reported_one_run_at_a_time_in_increasing_order(lexey: LexeyClient) -> None:
    suite = parse_suite("cases:\n" + "".join(f"  - {{name: c{i}, turns: [{{say: hello}}]}}\n" for i in range(4)))
    seen: list[int] = []
    active = 0

    async def on_run(done: int, total: int, case: str, index: int, run: RunReport) -> None:
        nonlocal active
        active += 1
        assert active == 1, "on_run was called again before the previous call returned"
        await anyio.sleep(0.05)  # a slow on_run (sending an MCP progress notification yields) is what this tests
        seen.append(done)
        active -= 1

    await run_suite(lexey, suite, concurrency=4, on_run=on_run)
    assert seen == [1, 2, 3, 4]


async def test_knowledge_from_setup_is_what_the_agent_answers_from(sandbox: Sandbox, lexey: LexeyClient) -> None:
    suite = parse_suite(
        f"setup: ['{PRICING}', '{RULE}']\n"
        "cases:\n"
        "  - name: pricing\n"
        "    turns: [{say: 'How much is Pro?', expect: {contains: [$12], escalated: false}}]\n"
        "  - name: refund\n"
        "    turns: [{say: I want a refund}]\n"
        "    expect: {escalated: true}\n"
    )
    unconfigured = await run_suite(lexey, suite, setup=False)
    assert not unconfigured.passed
    assert [f.expectation for c in unconfigured.cases for f in c.runs[0].failures] == ["contains", "escalated"]
    assert sandbox.stats.requests == 4  # two conversations created, two messages: no management request
    configured = await run_suite(lexey, suite)
    assert configured.passed, configured.model_dump()
    assert [r.key_type for r in sandbox.requests_log[4:7]] == ["management"] * 3  # setup: create, 2 messages


async def test_escalation_is_the_conversations_status_after_the_turn(lexey: LexeyClient) -> None:
    suite = parse_suite(
        f"setup: ['{RULE}']\n"
        "cases:\n"
        "  - name: stays escalated\n"
        "    turns:\n"
        "      - {say: hello, expect: {escalated: false}}\n"
        "      - {say: refund me, expect: {escalated: true}}\n"
        "      - {say: hello again, expect: {escalated: true}}\n"
    )
    report = await run_suite(lexey, suite)
    assert report.passed, report.model_dump()


async def test_outcome_and_max_seconds_against_the_sandbox(sandbox: Sandbox, lexey: LexeyClient) -> None:
    suite = parse_suite(
        "cases:\n"
        "  - name: error expected\n"
        "    turns: [{say: hello, expect: {outcome: error}}]\n"
        "  - name: complete expected\n"
        "    turns: [{say: hello}]\n"
        "  - name: slow\n"
        "    turns: [{say: hello, expect: {max_seconds: 0.05}}]\n"
    )
    sandbox.inject(Fault(target="customer", error_at=1, times=2))
    sandbox.inject(Fault(target="customer", stall_after=1, stall_seconds=0.3))
    report = await run_suite(lexey, suite, concurrency=1)
    error_expected, complete_expected, slow = report.cases
    assert error_expected.passed
    assert [f.expectation for f in complete_expected.runs[0].failures] == ["outcome"]
    assert complete_expected.runs[0].failures[0].detail.startswith("expected complete, got error (")
    assert [f.expectation for f in slow.runs[0].failures] == ["max_seconds"]


async def test_repeat_counts_runs_and_names_a_flaky_case(sandbox: Sandbox, lexey: LexeyClient) -> None:
    suite = parse_suite("cases:\n  - {name: steady, turns: [{say: hello}]}\n  - {name: other, turns: [{say: hi}]}\n")
    seen: list[tuple[int, int, str, int]] = []

    async def on_run(done: int, total: int, case: str, index: int, run: RunReport) -> None:
        seen.append((done, total, case, index))

    sandbox.inject(Fault(target="customer", error_at=1))  # the first run of the first case only
    report = await run_suite(lexey, suite, repeat=3, concurrency=1, on_run=on_run)
    assert [s[:2] for s in seen] == [(i, 6) for i in range(1, 7)]
    assert sorted((s[2], s[3]) for s in seen) == sorted((c, i) for c in ("steady", "other") for i in range(3))
    steady, other = report.cases
    assert [r.passed for r in steady.runs] == [False, True, True]
    assert (steady.passed, steady.pass_rate, steady.flaky) == (False, 0.6667, True)
    assert (other.passed, other.pass_rate, other.flaky) == (True, 1.0, False)
    assert not report.passed
    conversations = [r.conversation_id for c in report.cases for r in c.runs]
    assert len(set(conversations)) == 6  # every run in its own fresh conversation


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_concurrency_bounds_the_runs_in_flight(sandbox: Sandbox, lexey: LexeyClient, concurrency: int) -> None:
    suite = parse_suite("cases:\n" + "".join(f"  - {{name: c{i}, turns: [{{say: hello}}]}}\n" for i in range(5)))
    sandbox.inject(Fault(target="customer", stall_after=1, stall_seconds=0.15, times=5))
    report = await run_suite(lexey, suite, concurrency=concurrency)
    assert report.passed
    assert sandbox.stats.peak_open_streams == concurrency
    assert sandbox.stats.streams_started == 5


async def test_an_upstream_failure_fails_the_run_with_the_reason(sandbox: Sandbox, lexey: LexeyClient) -> None:
    suite = parse_suite("cases:\n  - {name: a, turns: [{say: one}, {say: two}]}\n")
    sandbox.inject(Fault(target="customer", status=402))
    report = await run_suite(lexey, suite)
    (run,) = report.cases[0].runs
    assert run.conversation_id is not None
    (failure,) = run.failures
    assert (failure.turn, failure.expectation) == (1, "request")
    assert "402" in failure.detail
    assert SuiteReport.model_validate(report.model_dump(mode="json")) == report
    testcase = ET.fromstring(junit_xml(report, 1, "s")).find("./testsuite/testcase")
    assert testcase is not None
    assert [child.tag for child in testcase] == ["error", "system-out"]  # the agent was never asked: not a failure
    assert "402" in (testcase.findtext("error") or "")


async def test_keys_and_case_names_are_checked_before_anything_is_sent(sandbox: Sandbox) -> None:
    suite = parse_suite(f"setup: ['{PRICING}']\ncases:\n  - {{name: a, turns: [{{say: hi}}]}}\n")
    async with LexeyClient(sandbox_settings_for(sandbox, management_key=None), trust_env=False) as client:
        with pytest.raises(LexeyConfigError, match=r"setup instructions, which need the management key\. "):
            await run_suite(client, suite)
        with pytest.raises(LexeyInputError, match=r"No case named 'b' in <suite>: 'a'\."):
            await run_suite(client, suite, cases=["b"], setup=False)
        assert (await run_suite(client, suite, setup=False)).passed  # without setup, no management key needed
    async with LexeyClient(sandbox_settings_for(sandbox, customer_key="lxm_wrong_kind"), trust_env=False) as client:
        with pytest.raises(LexeyConfigError, match="LEXEY_CUSTOMER_KEY must be a Lexey customer key"):
            await run_suite(client, suite)
    assert sandbox.stats.requests == 2  # only the run without setup


async def test_a_failed_setup_stops_before_any_case(sandbox: Sandbox, lexey: LexeyClient) -> None:
    suite = parse_suite(f"setup: ['{PRICING}', '{RULE}']\ncases:\n  - {{name: a, turns: [{{say: hi}}]}}\n")
    sandbox.inject(Fault(target="management", error_at=1, times=1))
    with pytest.raises(
        SetupError, match=r"^Setup step 1 \(line 1\) missed its expectations \(outcome: expected complete, got error \("
    ):
        await run_suite(lexey, suite)
    sandbox.inject(Fault(target="management", status=403))
    with pytest.raises(SetupError, match=r"Setup step 1 \(line 1\) failed: .*403"):
        await run_suite(lexey, suite)
    assert not any(r.key_type == "customer" for r in sandbox.requests_log)


async def test_a_setup_step_not_applied_or_missing_its_expectation_stops_the_suite_and_is_reported(
    sandbox: Sandbox, lexey: LexeyClient
) -> None:
    not_understood = "Please make refunds over $100 go to a human."
    suite = parse_suite(
        f"setup: ['{PRICING}', '{not_understood}', '{RULE}']\ncases:\n  - {{name: a, turns: [{{say: hi}}]}}\n"
    )
    run = plan(suite)
    with pytest.raises(SetupError) as raised:
        await execute(lexey, run)
    assert str(raised.value).startswith(
        f'Setup step 2 (line 1) was not applied, so no case ran: "{not_understood}"; the management agent replied: '
        "\"Not applied: I didn't understand that instruction."
    )
    report = run.report()
    assert (report.passed, report.cases) == (False, [])
    assert [(s.instruction, s.outcome) for s in report.setup] == [(PRICING, "applied"), (not_understood, "not applied")]
    assert report.setup[0].reply.startswith('Added the knowledge article "pricing"')
    assert not any(r.key_type == "customer" for r in sandbox.requests_log)  # the third step and the cases: never sent

    expecting = parse_suite(
        "setup:\n"
        "  - say: Always escalate refund requests over $100.\n"
        "    expect: {contains: [over $100], not_contains: [refund requests]}\n"
        "cases:\n  - {name: a, turns: [{say: hi}]}\n"
    )
    run = plan(expecting)
    with pytest.raises(
        SetupError, match=r"^Setup step 1 \(line 2\) missed its expectations \(not_contains: found 'refund"
    ):
        await execute(lexey, run)
    (step,) = run.report().setup
    assert step.outcome == "expectation failed"
    assert [f.expectation for f in step.failures] == ["not_contains"]
    assert step.reply.endswith("whenever a customer mentions: refund requests over $100.")
    assert not any(r.key_type == "customer" for r in sandbox.requests_log)


async def test_every_turn_of_a_run_is_in_its_transcript_with_its_expectations(lexey: LexeyClient) -> None:
    suite = parse_suite(
        f"setup: ['{PRICING}']\n"
        "cases:\n"
        "  - name: two turns\n"
        "    turns:\n"
        "      - {say: hello}\n"
        "      - {say: 'How much is Pro?', expect: {contains: [$12, Enterprise], escalated: false, max_seconds: 30}}\n"
    )
    report = await run_suite(lexey, suite)
    (run,) = report.cases[0].runs
    assert [(t.say, t.escalated) for t in run.turns] == [("hello", False), ("How much is Pro?", False)]
    assert run.turns[1].reply.startswith("Here's what I can tell you about pricing: Pro is $12/month")
    assert [c.wanted for c in run.turns[0].checks] == ["outcome complete"]
    assert [c.wanted for c in run.turns[1].checks] == [
        "outcome complete",
        "contains '$12', 'Enterprise'",
        "not escalated",
        "within 30s",
    ]
    assert [(f.turn, f.expectation) for f in run.failures] == [(2, "contains")]
    assert [(s.outcome, s.failures) for s in report.setup] == [("applied", [])]


async def test_selected_cases_only(lexey: LexeyClient) -> None:
    suite = parse_suite("cases:\n  - {name: a, turns: [{say: hi}]}\n  - {name: b, turns: [{say: hi}]}\n")
    report = await run_suite(lexey, suite, cases=["b"])
    assert [c.name for c in report.cases] == ["b"]


async def test_cancelling_a_suite_run_closes_its_upstream_streams(sandbox: Sandbox, lexey: LexeyClient) -> None:
    suite = parse_suite("cases:\n" + "".join(f"  - {{name: c{i}, turns: [{{say: hello}}]}}\n" for i in range(4)))
    sandbox.inject(Fault(target="customer", stall_after=1, stall_seconds=30, times=4))
    await cancel_once_streaming(sandbox, 4, run_suite, lexey, suite)
    assert list(sandbox.store.closed_reasons) == ["disconnected"] * 4


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_key_stops_the_suite_as_a_configuration_error(
    sandbox: Sandbox, lexey: LexeyClient, status: int
) -> None:
    suite = parse_suite("cases:\n" + "".join(f"  - {{name: c{i}, turns: [{{say: hello}}]}}\n" for i in range(20)))
    sandbox.inject(Fault(target="customer", status=status, times=100))
    with pytest.raises(LexeyConfigError, match=f"^The suite stopped: Lexey customer API answered HTTP {status}"):
        await run_suite(lexey, suite, concurrency=2)
    # The first refusal stopped both workers (each refused at most once): not 20 refusals.
    assert sandbox.stats.faults_applied <= 2


async def test_no_key_in_any_report_or_log(
    sandbox: Sandbox, lexey: LexeyClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    suite = parse_suite(
        f"setup: [{PRICING!r}]\ncases:\n"
        + "".join(f"  - {{name: c{i}, turns: [{{say: hello, expect: {{contains: nope}}}}]}}\n" for i in range(3))
    )
    sandbox.inject(Fault(target="customer", status=402))
    sandbox.inject(Fault(target="customer", error_at=1))
    out = io.StringIO()
    report = await run_suite(lexey, suite, concurrency=1, on_run=Progress(1, stream=out))
    assert [f.expectation for c in report.cases for r in c.runs for f in r.failures][:2] == ["request", "outcome"]
    sandbox.inject(Fault(target="customer", status=401))
    with pytest.raises(LexeyConfigError) as refused:
        await run_suite(lexey, suite, setup=False)
    shown = [out.getvalue(), summary_table(report), junit_xml(report, 1, "s").decode(), report.model_dump_json()]
    shown += [str(refused.value), caplog.text]
    for key in (CUSTOMER_KEY, MANAGEMENT_KEY):
        assert not any(key in text or key[4:16] in text for text in shown)


@pytest.mark.e2e
async def test_a_pattern_that_ran_out_of_time_is_not_searched_again_in_that_suite_run(anyio_backend: str) -> None:
    # 24 cases sharing a catastrophic pattern kept 4 processes busy 15.2 s from one call.
    catastrophic = re.compile(r"(a+)+$")
    with one_budget_per_pattern():
        assert await search(catastrophic, "a" * 64 + "!", seconds=0.5) is None  # ran out of time
        assert await search(catastrophic, "aaa", seconds=30) is None  # would match at once: not searched
        assert await search(re.compile("a+"), "aaa") is True  # another pattern is
    assert await search(catastrophic, "aaa") is True  # a new suite run searches it again
