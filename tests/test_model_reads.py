"""What a model reads and gets back, in characters: the tool definitions (a committed snapshot and a budget), and
the size of typical results beyond the upstream's own words (budgets), through the official `mcp.Client`.

Counts are `json.dumps` (default separators) of what a model reads. Measured on this branch, before → after:
  eight tools (name, title, description, inputSchema, annotations): 7,138 → 5,953; server instructions 767 → 767
  a support-agent reply, overhead beyond the reply (text block + structured content − 2 × reply): 574 → 337
  a Lexi reply, the same: 1,039 → 843
  a 20-turn scenario, the same (− 2 × every reply): 12,171 → 4,507 (text 6,006 → 4,277, structured 10,965 → 5,030)
  a 100-message history page, the same (− 2 × every message's content): 8,826 → 8,826 (roles, times: all data)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, Tool

from lexey_mcp.models import LexiResult
from lexey_mcp.qa.report import SuiteReport
from lexey_mcp.qa.runner import excerpt
from lexey_mcp.sandbox import Fault, Sandbox
from lexey_mcp.server import INSTRUCTIONS, ServerOptions, build_server
from tests.conftest import sandbox_settings_for
from tests.reading import text_of

pytestmark = pytest.mark.anyio

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools_list.json"
#: What a model reads of all eight tools, every toolset on.
TOOLS_BUDGET = 6_000
#: Characters of a result beyond the upstream's words (see the module docstring for what each counts).
REPLY_OVERHEAD_BUDGET = 400
LEXI_OVERHEAD_BUDGET = 900
SCENARIO_20_OVERHEAD_BUDGET = 5_000
HISTORY_100_OVERHEAD_BUDGET = 9_000


def model_reads(tool: Tool) -> int:
    """Characters a model reads of one tool: its name, title, description, input schema and annotations."""
    shown = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
    return len(json.dumps({k: shown[k] for k in ("name", "title", "description", "inputSchema", "annotations")}))


async def listed_tools(sandbox: Sandbox, tmp_path: Path) -> list[Tool]:
    async with Client(build_server(sandbox_settings_for(sandbox, state_dir=tmp_path))) as client:
        return (await client.list_tools()).tools


async def test_tools_list_matches_the_committed_snapshot(
    sandbox: Sandbox, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Every change to what a model reads shows in review as a diff of tests/snapshots/tools_list.json."""
    tools = await listed_tools(sandbox, tmp_path)
    listed = {
        "instructions": INSTRUCTIONS,
        "tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools],
    }
    now = json.dumps(listed, indent=2, ensure_ascii=False) + "\n"
    if request.config.getoption("--update-snapshots"):
        SNAPSHOT.write_text(now, encoding="utf-8")
    assert SNAPSHOT.read_text(encoding="utf-8") == now, "tools/list changed: run pytest --update-snapshots, review"


async def test_eight_tools_fit_in_the_budget_with_every_constraint_kept(sandbox: Sandbox, tmp_path: Path) -> None:
    tools = {t.name: t for t in await listed_tools(sandbox, tmp_path)}
    assert len(tools) == 8
    assert sum(model_reads(t) for t in tools.values()) <= TOOLS_BUDGET
    schemas = json.dumps([t.input_schema for t in tools.values()])
    for noise in ('"title"', '"anyOf"', '"$ref"', '"$defs"', '"default": null'):
        assert noise not in schemas
    lexi = tools["lexi_chat"].input_schema
    assert lexi["required"] == ["message"]
    assert (lexi["properties"]["message"]["minLength"], lexi["properties"]["message"]["maxLength"]) == (1, 12_000)
    assert lexi["properties"]["conversation_id"] == {
        "type": "string",
        "format": "uuid",
        "description": "Omit to start a new conversation.",
    }
    assert lexi["properties"]["idempotency_key"]["format"] == "uuid"
    context = lexi["properties"]["context"]
    assert (context["type"], context["additionalProperties"]) == ("object", False)
    assert set(context["properties"]) == {"contact_id", "deal_id", "matter_id", "company_id", "page"}
    assert all(
        field == {"type": "string", "minLength": 1, "maxLength": 500} for field in context["properties"].values()
    )
    history = tools["get_conversation_messages"].input_schema["properties"]
    assert (history["limit"]["minimum"], history["limit"]["maximum"], history["limit"]["default"]) == (1, 500, 50)
    assert (history["before"]["type"], history["before"]["minimum"]) == ("integer", 0)
    scenario = tools["run_customer_scenario"].input_schema["properties"]["messages"]
    assert (scenario["minItems"], scenario["maxItems"], scenario["items"]["maxLength"]) == (1, 20, 100_000)
    escalations = tools["list_escalations"].input_schema["properties"]
    assert (escalations["since"]["format"], escalations["limit"]["maximum"]) == ("date-time", 100)
    assert tools["run_test_suite"].input_schema["properties"]["repeat"]["maximum"] == 20


def overhead(result: CallToolResult, upstream_words: list[str]) -> int:
    """A result's characters (text block and structured content) beyond the upstream words, which appear in both."""
    assert not result.is_error, text_of(result)
    size = len(text_of(result)) + len(json.dumps(result.structured_content))
    return size - 2 * sum(len(words) for words in upstream_words)


async def test_a_reply_carries_little_beyond_its_words(sandbox: Sandbox) -> None:
    async with Client(
        build_server(sandbox_settings_for(sandbox), ServerOptions(toolsets=["customer", "lexi"]))
    ) as client:
        reply = await client.call_tool("send_customer_message", {"message": "What are your business hours?"})
        lexi = await client.call_tool("lexi_chat", {"message": "What stage is the BrightPath deal at?"})
    assert reply.structured_content is not None
    assert lexi.structured_content is not None
    assert overhead(reply, [reply.structured_content["text"]]) <= REPLY_OVERHEAD_BUDGET
    assert overhead(lexi, [lexi.structured_content["text"]]) <= LEXI_OVERHEAD_BUDGET
    # Fields at their default (empty, zero, null) are left out; the output schema gives the default.
    assert set(reply.structured_content) == {
        "text",
        "conversation_id",
        "outcome",
        "events_received",
        "last_event_id",
        "request_id",
    }


async def test_a_20_turn_scenario_and_a_100_message_history_page_stay_in_budget(sandbox: Sandbox) -> None:
    questions = ["What are your business hours?", "Do you ship to Canada?", "Can I pay by card?", "Thanks!"]
    async with Client(build_server(sandbox_settings_for(sandbox), ServerOptions(toolsets=["customer"]))) as client:
        scenario = await client.call_tool("run_customer_scenario", {"messages": (questions * 5)[:20]})
        assert scenario.structured_content is not None
        cid = scenario.structured_content["conversation_id"]
        for question in (questions * 8)[:30]:
            sent = await client.call_tool("send_customer_message", {"message": question, "conversation_id": cid})
            assert not sent.is_error
        history = await client.call_tool("get_conversation_messages", {"conversation_id": cid, "limit": 100})
    turns: list[dict[str, Any]] = scenario.structured_content["turns"]
    assert len(turns) == 20
    assert overhead(scenario, [t["text"] for t in turns]) <= SCENARIO_20_OVERHEAD_BUDGET
    assert history.structured_content is not None
    messages = history.structured_content["messages"]
    assert len(messages) == 100
    assert overhead(history, [m["content"] for m in messages]) <= HISTORY_100_OVERHEAD_BUDGET


async def test_lexi_text_says_the_lookups_credits_and_rate_limit_its_description_promises(sandbox: Sandbox) -> None:
    """lexi_chat's description: "Returns the answer, the CRM lookups it made, credits left and rate limits". A host
    that shows the model only the text block must not lose them."""
    async with Client(build_server(sandbox_settings_for(sandbox), ServerOptions(toolsets=["lexi"]))) as client:
        looked_up = await client.call_tool("lexi_chat", {"message": "What stage is the BrightPath deal at?"})
        no_tools = await client.call_tool("lexi_chat", {"message": "Hello", "allow_tools": False})
    result = LexiResult.model_validate(looked_up.structured_content)
    assert result.rate_limit is not None
    assert result.rate_limit.reset is not None
    until = datetime.fromtimestamp(result.rate_limit.reset, UTC).strftime("%Y-%m-%d %H:%M UTC")
    assert text_of(looked_up).splitlines()[0] == (
        f"[Lexi reply; outcome complete, conversation {result.conversation_id}, "
        "CRM lookups: search_deals (Found 1 deal), 4,998 credits left, "
        f"rate limit: 999 of 1,000 requests left until {until}]"
    )
    assert result.text in text_of(looked_up)
    assert "no CRM lookups, 4,997 credits left, rate limit: 998 of 1,000" in text_of(no_tools).splitlines()[0]


@pytest.mark.e2e
async def test_suite_text_says_what_setup_did(sandbox: Sandbox) -> None:
    suite = (Path(__file__).parents[1] / "examples" / "suites" / "acme-support.yaml").read_text()
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        result = await client.call_tool("run_test_suite", {"suite": suite})
    report = SuiteReport.model_validate(result.structured_content)
    assert [step.outcome for step in report.setup] == ["applied"] * 4
    assert report.setup[1].reply.startswith('Added the knowledge article "pricing"')
    lines = text_of(result).splitlines()
    assert lines[0] == "Setup: 4 instructions sent; the management agent replied:"
    assert lines[1].startswith("<<<reply ")
    assert lines[3] == f"2. applied: {excerpt(report.setup[1].reply)}"
    assert lines[6].startswith("<<<end reply ")
    assert "Acme support: PASSED: 5 cases, 5 runs, all passed." in lines


async def test_an_unfinished_lexi_reply_says_the_key_to_retry_with(sandbox: Sandbox) -> None:
    sandbox.inject(Fault(target="lexi", drop_after=3))
    async with Client(build_server(sandbox_settings_for(sandbox), ServerOptions(toolsets=["lexi"]))) as client:
        cut = await client.call_tool("lexi_chat", {"message": "What stage is the BrightPath deal at?"})
    result = LexiResult.model_validate(cut.structured_content)
    assert (result.outcome, result.partial_reason) == ("partial", "connection_lost")
    header = text_of(cut).splitlines()[0]
    assert header.startswith("[Lexi reply; outcome partial: connection_lost, conversation ")
    assert header.endswith(f"to retry without a second charge pass idempotency_key {result.idempotency_key}]")
