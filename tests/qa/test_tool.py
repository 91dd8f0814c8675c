"""`run_test_suite` through the official client: in-process (both protocol eras) and over stdio."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.context import ClientRequestContext
from mcp.types import ElicitRequestParams, ElicitResult

from lexey_mcp.config import Settings
from lexey_mcp.qa.arguments import MAX_RUNS
from lexey_mcp.qa.compare import read_baseline
from lexey_mcp.qa.parsing import parse_suite
from lexey_mcp.qa.report import SuiteReport
from lexey_mcp.sandbox import Fault, Sandbox
from lexey_mcp.server import ServerOptions, build_server
from tests.conftest import cancel_once_streaming, sandbox_settings_for
from tests.processes import SERVER, clean_env
from tests.reading import text_of
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

SUITES = Path(__file__).resolve().parents[2] / "examples" / "suites"
PASSING = (SUITES / "acme-support.yaml").read_text()
FAILING = (SUITES / "fails-on-purpose.yaml").read_text()


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.e2e
async def test_a_passing_suite_with_progress_as_runs_finish(sandbox: Sandbox, mode: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(build_server(sandbox_settings_for(sandbox)), mode=mode) as client:
        result = await client.call_tool(
            "run_test_suite", {"suite": PASSING, "repeat": 2}, progress_callback=on_progress
        )
    assert not result.is_error, text_of(result)
    report = SuiteReport.model_validate(result.structured_content)
    assert report.passed
    assert [(c.name, len(c.runs), c.pass_rate) for c in report.cases][:2] == [
        ("pricing", 2, 1.0),
        ("business hours", 2, 1.0),
    ]
    assert len({r.conversation_id for c in report.cases for r in c.runs}) == 10
    # The last run's progress is not sent: the result follows at once and reports it (a progress notification right
    # before the result is lost by TypeScript SDK clients on stdio).
    assert [(done, total) for done, total, _ in seen] == [(i, 10) for i in range(1, 10)]
    assert all(message and message.endswith(" passed") and "[run " in message for _, _, message in seen)
    assert "Acme support: PASSED: 5 cases, 10 runs, all passed." in text_of(result)


@pytest.mark.e2e
async def test_a_failing_suite_reports_failures_with_conversation_ids(sandbox: Sandbox) -> None:
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        result = await client.call_tool("run_test_suite", {"suite": FAILING}, progress_callback=on_progress)
        assert not result.is_error  # failed expectations are a result, not a tool error
        report = SuiteReport.model_validate(result.structured_content)
        assert not report.passed
        discount = next(c for c in report.cases if c.name == "student discount")
        (run,) = discount.runs
        assert [f.expectation for f in run.failures] == ["contains", "not_contains"]
        assert run.conversation_id is not None
        history = await client.call_tool("get_conversation_messages", {"conversation_id": run.conversation_id})
    assert "student discount" in text_of(history)
    assert any(m.startswith("student discount FAILED: turn 1 contains: missing '50% off'") for m in messages)


async def test_an_invalid_suite_is_a_tool_error_naming_line_and_field(sandbox: Sandbox) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        result = await client.call_tool(
            "run_test_suite", {"suite": "cases:\n  - name: a\n    turns: [{say: hi, expect: {escalated: maybe}}]\n"}
        )
    assert result.is_error
    assert text_of(result) == (
        "Invalid test suite:\n  suite:3:43: cases[0].turns[0].expect.escalated: must be true or false"
    )
    assert sandbox.stats.requests == 0


async def test_a_null_baseline_is_no_baseline_as_for_every_optional_argument(sandbox: Sandbox) -> None:
    # Hosts that fill every optional argument send null for those they leave out; `baseline` is a plain `str` (so
    # the SDK does not parse its JSON text), which must still take null for "none".
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        result = await client.call_tool(
            "run_test_suite", {"suite": "cases:\n  - {name: hi, turns: [{say: hello}]}\n", "baseline": None}
        )
    assert not result.is_error, text_of(result)
    report = SuiteReport.model_validate(result.structured_content)
    assert (report.passed, report.baseline) == (True, None)


async def test_setup_without_a_management_key_is_refused_before_anything_runs(sandbox: Sandbox) -> None:
    server = build_server(sandbox_settings_for(sandbox, management_key=None))
    async with Client(server) as client:
        result = await client.call_tool("run_test_suite", {"suite": PASSING})
    assert result.is_error
    assert text_of(result) == (
        "This suite has setup instructions, which need the management key. LEXEY_MANAGEMENT_KEY is not set: set it "
        "to a Lexey management key (it starts with lxm_)."
    )
    assert sandbox.stats.requests == 0


async def test_setup_is_refused_when_the_server_leaves_out_the_management_toolset(sandbox: Sandbox) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox), ServerOptions(toolsets=["customer"]))) as client:
        refused = await client.call_tool("run_test_suite", {"suite": PASSING})
        assert refused.is_error
        assert text_of(refused).startswith("Nothing was sent: this suite has setup instructions")
        assert "does not expose the management tools (--toolsets)" in text_of(refused)
        assert sandbox.stats.requests == 0  # the management key is set, but --toolsets customer keeps it unused
        without_setup = await client.call_tool(
            "run_test_suite", {"suite": "cases:\n  - {name: hi, turns: [{say: hello}]}\n"}
        )
    assert SuiteReport.model_validate(without_setup.structured_content).passed


async def test_a_refused_key_is_a_tool_error_not_a_report_of_failed_cases(sandbox: Sandbox) -> None:
    sandbox.inject(Fault(target="customer", status=401))
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        result = await client.call_tool("run_test_suite", {"suite": "cases:\n  - {name: a, turns: [{say: hi}]}\n"})
    assert result.is_error
    assert text_of(result).startswith("The suite stopped: Lexey customer API answered HTTP 401")
    assert "LEXEY_CUSTOMER_KEY" in text_of(result)


async def test_repeat_is_bounded_in_the_schema(sandbox: Sandbox) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool("run_test_suite", {"suite": PASSING, "repeat": 0})
    tool = tools["run_test_suite"]
    assert tool.input_schema["properties"]["repeat"]["minimum"] == 1
    assert tool.input_schema["required"] == ["suite"]
    assert tool.output_schema is not None
    assert tool.annotations is not None
    assert (tool.annotations.read_only_hint, tool.annotations.destructive_hint) == (False, True)
    assert result.is_error
    assert sandbox.stats.requests == 0


async def test_cancelling_the_tool_call_closes_every_upstream_stream(sandbox: Sandbox, mode: str) -> None:
    suite = "cases:\n" + "".join(f"  - {{name: c{i}, turns: [{{say: hello}}]}}\n" for i in range(3))
    async with Client(build_server(sandbox_settings_for(sandbox)), mode=mode) as client:
        sandbox.inject(Fault(target="customer", stall_after=1, stall_seconds=30, times=3))
        await cancel_once_streaming(sandbox, 3, client.call_tool, "run_test_suite", {"suite": suite})
        assert list(sandbox.store.closed_reasons) == ["disconnected"] * 3
        after = await client.call_tool("create_conversation", {})  # the session still works
    assert not after.is_error


@pytest.mark.e2e
async def test_over_stdio_with_the_embedded_sandbox() -> None:
    params = StdioServerParameters(
        command=SERVER[0], args=[*SERVER[1:], "--sandbox", "--sandbox-delay", "0"], env=clean_env()
    )
    async with Client(params) as client:
        passing = await client.call_tool("run_test_suite", {"suite": PASSING})
        failing = await client.call_tool("run_test_suite", {"suite": FAILING})
    assert SuiteReport.model_validate(passing.structured_content).passed
    report = SuiteReport.model_validate(failing.structured_content)
    assert [c.passed for c in report.cases] == [True, False, False]


WITH_SETUP = (
    "setup: ['Add a knowledge article about returns: 30 days.']\n"
    "cases:\n  - {name: returns, turns: [{say: 'How do returns work?', expect: {contains: 30 days}}]}\n"
)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_suite_and_the_baseline_are_read_off_the_event_loop(sandbox: Sandbox, mode: str) -> None:
    """A 100k-character suite parsed on the event loop stalled every other client's requests 1.2 s. The suite (read
    twice with --confirm-changes: to ask, then to run) and the baseline are read in worker threads: a profile hook on
    the event loop's thread sees neither reader called there, though both ran (the report compares)."""
    readers = {parse_suite.__code__, read_baseline.__code__}
    on_the_loop: list[str] = []

    def watch(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code in readers:
            on_the_loop.append(frame.f_code.co_name)

    async def accept(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="accept", content={"send": True})

    baseline = '{"cases": [{"name": "returns", "pass_rate": 0.5}]}'
    server = build_server(sandbox_settings_for(sandbox), ServerOptions(confirm_changes=True))
    async with Client(server, mode=mode, elicitation_callback=accept) as client:
        sys.setprofile(watch)
        try:
            result = await client.call_tool("run_test_suite", {"suite": WITH_SETUP, "baseline": baseline})
            parse_suite(WITH_SETUP, "suite")  # the hook sees a reader called on this thread
        finally:
            sys.setprofile(None)
    assert not result.is_error, text_of(result)
    report = SuiteReport.model_validate(result.structured_content)
    assert [(s.outcome, len(report.cases[0].runs)) for s in report.setup] == [("applied", 1)]
    assert [(c.name, c.change) for c in report.baseline or ()] == [("returns", "fixed")]
    assert on_the_loop == ["parse_suite"]  # the test's own call, none of the tool's


def _suite(cases: int) -> str:
    return "cases:\n" + "".join(f"  - {{name: c{n}, turns: [{{say: 'What are your hours?'}}]}}\n" for n in range(cases))


async def test_one_call_takes_at_most_max_runs(sandbox: Sandbox) -> None:
    # One call could schedule 54,640 runs (~109,000 upstream requests).
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        result = await client.call_tool("run_test_suite", {"suite": _suite(26), "repeat": 20})
    assert result.is_error
    assert text_of(result) == (
        f"Nothing was sent: 26 cases run 20 times would be 520 runs, and one suite run takes at most {MAX_RUNS}. "
        "Run fewer cases, or fewer repeats."
    )
    assert sandbox.stats.requests == 0


async def test_each_run_counts_against_the_rate_limit(sandbox: Sandbox) -> None:
    # One run_test_suite call counted as one call and sent 120 requests.
    server = build_server(sandbox_settings_for(sandbox, rate_limit="3/hour"))
    async with Client(server) as client:
        result = await client.call_tool("run_test_suite", {"suite": _suite(5)})
    assert result.is_error
    assert text_of(result).startswith(
        "The suite stopped after 2 of 5 runs: Rate limit reached for this customer key: 3/hour tool calls"
    )


MARKED = """
name: escalation rules
setup:
  - "Always escalate if a customer mentions legal issues."
cases:
  - name: legal issue escalates
    turns: [{say: "This is now a legal issue.", expect: {escalated: true}}]
"""


async def test_escalations_from_a_suites_runs_are_marked_with_the_suite_and_case(mode: str) -> None:
    """The embedded sandbox posts its webhooks to this server's own receiver: the suite's escalation arrives like a
    customer's, and is listed as the suite's run; a customer's is not."""
    server = build_server(Settings(_env_file=None), ServerOptions(sandbox=True, sandbox_delay=0))
    async with Client(server, mode=mode) as client:
        suite = await client.call_tool("run_test_suite", {"suite": MARKED})
        assert not suite.is_error, text_of(suite)
        report = SuiteReport.model_validate(suite.structured_content)
        [[run]] = [case.runs for case in report.cases]
        customer = await client.call_tool("send_customer_message", {"message": "This is a legal issue for me too."})
        assert customer.structured_content is not None
        theirs = customer.structured_content["conversation_id"]

        async def listed() -> dict[str, object]:
            result = await client.call_tool("list_escalations", {})
            assert result.structured_content is not None
            return {e["conversation_id"]: e.get("test") for e in result.structured_content["escalations"]}

        await wait_until(lambda: _both_listed(listed, run.conversation_id, theirs), "both escalations listed")
        marks = await listed()
        text = text_of(await client.call_tool("list_escalations", {}))
    assert marks == {run.conversation_id: {"suite": "escalation rules", "case": "legal issue escalates"}, theirs: None}
    assert text.count("a test run: suite 'escalation rules', case 'legal issue escalates'") == 1


async def _both_listed(listed: Callable[[], Awaitable[dict[str, object]]], *conversations: str | None) -> bool:
    return set(conversations) <= set(await listed())
