"""Bad tool input through the MCP server: each case refused as a tool error before any upstream request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest
from mcp import Client
from mcp.types import TextContent

from lexey_mcp.sandbox import Sandbox
from lexey_mcp.server import build_server
from lexey_mcp.server.parameters import MAX_CHAT_MESSAGE_CHARS
from tests.conftest import sandbox_settings_for
from tests.events.helpers import SECRET

pytestmark = pytest.mark.anyio

CID = "550e8400-e29b-41d4-a716-446655440000"
BAD_IDS = [
    "../../management/conversations",
    "..",
    "%2e%2e",
    "%2e%2e%2f",
    "a/b",
    "/",
    f"{CID}/",
    f"{CID}?x=1",
    f"{CID}#top",
    "x?y",
    "#",
    f"{CID}\x00",
    "\x00",
    "\u2215" * 36,
    "\u2044etc",
    f"{CID}\uff0f..",
    "http://evil.test/x",
    "//evil.test",
    "",
    " ",
    f" {CID}",
    f"{CID}\n",
    f"{{{CID}}}",
    f"urn:uuid:{CID}",
    CID.replace("-", ""),
    CID[:-1] + "g",
    CID + "0",
]
ID_TOOLS = [
    ("send_customer_message", {"message": "hi"}),
    ("get_conversation_messages", {}),
    ("configure_org", {"instruction": "Set our agent name to Ava"}),
    ("lexi_chat", {"message": "hi"}),
]


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[Client]:
    async with Client(build_server(sandbox_settings_for(sandbox))) as c:
        yield c


async def refused(client: Client, sandbox: Sandbox, tool: str, arguments: dict[str, Any]) -> str:
    before = sandbox.stats.requests
    result = await client.call_tool(tool, arguments)
    assert result.is_error, (tool, arguments)
    assert sandbox.stats.requests == before, "a request reached the upstream"
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_bad_conversation_ids_in_every_tool(client: Client, sandbox: Sandbox, bad_id: str) -> None:
    for tool, arguments in ID_TOOLS:
        text = await refused(client, sandbox, tool, {**arguments, "conversation_id": bad_id})
        assert "conversation_id" in text


@pytest.mark.parametrize("bad_key", ["", "retry-1", "../x", CID + "\n", "\x00"])
async def test_bad_idempotency_keys(client: Client, sandbox: Sandbox, bad_key: str) -> None:
    text = await refused(client, sandbox, "lexi_chat", {"message": "hi", "idempotency_key": bad_key})
    assert "idempotency_key" in text


MESSAGE_TOOLS = [("send_customer_message", "message"), ("configure_org", "instruction"), ("lexi_chat", "message")]
BAD_MESSAGES = [
    ("", "must not be empty"),
    (" ", "is blank"),
    ("\n\t \r\n", "is blank"),
    ("\u00a0\u2003", "is blank"),
    ("a\ud800b", "not valid Unicode text"),
    ("\udfff", "not valid Unicode text"),
    ("nul\x00byte", "control characters"),
    ("esc\x1b[31m", "control characters"),
    ("del\x7f", "control characters"),
    ("c1\x9b", "control characters"),
]


@pytest.mark.parametrize(("tool", "field"), MESSAGE_TOOLS)
@pytest.mark.parametrize(("message", "needle"), BAD_MESSAGES)
async def test_bad_messages(client: Client, sandbox: Sandbox, tool: str, field: str, message: str, needle: str) -> None:
    text = await refused(client, sandbox, tool, {field: message})
    assert text.startswith(f"{field} ")  # names the argument: configure_org's is `instruction`
    assert needle in text


async def test_scenario_messages_are_all_checked_first(client: Client, sandbox: Sandbox) -> None:
    for messages in ([], ["hi"] * 21, ["fine", ""], ["fine", "\x00"], "just a string", [1, 2]):
        await refused(client, sandbox, "run_customer_scenario", {"messages": messages})


async def test_lexi_length_limit_is_local(client: Client, sandbox: Sandbox) -> None:
    assert "12,000" in await refused(client, sandbox, "lexi_chat", {"message": "x" * 12_001})
    ok = await client.call_tool("lexi_chat", {"message": "x" * 11_999 + "?"})
    assert not ok.is_error


MISTYPED = [
    ("send_customer_message", {"message": 42}),
    ("send_customer_message", {"message": ["hi"]}),
    ("send_customer_message", {"message": None}),
    ("send_customer_message", {}),
    ("get_conversation_messages", {"conversation_id": 12345}),
    ("lexi_chat", {"message": "hi", "allow_tools": "maybe"}),
    ("lexi_chat", {"message": "hi", "context": "contacts page"}),
    ("lexi_chat", {"message": "hi", "context": {"contact_id": 7}}),
    ("lexi_chat", {"message": "hi", "context": {"page": "x", "admin": True}}),
    ("configure_org", {"instruction": {"text": "hi"}}),
]


@pytest.mark.parametrize(("tool", "arguments"), MISTYPED)
async def test_mistyped_arguments(client: Client, sandbox: Sandbox, tool: str, arguments: dict[str, Any]) -> None:
    text = await refused(client, sandbox, tool, arguments)
    assert any(name in text for name in arguments) or "missing" in text
    assert "pydantic" not in text
    assert "Error executing tool" not in text


EXTRA = [
    ("send_customer_message", {"message": "hi", "conversationId": CID}),
    ("send_customer_message", {"message": "hi", "api_key": "lxc_x"}),
    ("create_conversation", {"customer": "me"}),
    ("lexi_chat", {"message": "hi", "allowTools": False}),
    ("run_customer_scenario", {"messages": ["hi"], "escalate": True}),
]


@pytest.mark.parametrize(("tool", "arguments"), EXTRA)
async def test_extra_arguments_are_refused_by_name(
    client: Client, sandbox: Sandbox, tool: str, arguments: dict[str, Any]
) -> None:
    text = await refused(client, sandbox, tool, arguments)
    assert "Unknown argument" in text
    assert "lxc_x" not in text


@pytest.mark.parametrize(
    ("tool", "arguments", "needle"),
    [
        ("lexi_chat", {"message": "hi", "x" * 1_000_000: 1}, "Unknown argument(s) for lexi_chat: xxxxxxxx"),
        ("lexi_chat", {"message": "hi", "context": {"k" * 1_000_000: "v"}}, "context has an unknown key 'kkkkkkkk"),
        ("lexi_chat", {"message": "hi", **{f"a{i}": 1 for i in range(5000)}}, "and 4,990 more. Accepted:"),
        (
            "run_customer_scenario",
            {"messages": [5] * 20},
            "messages item 10 must be a string, not the number 5.\nand 10 more",
        ),
    ],
)
async def test_an_answer_about_bad_arguments_stays_short(
    client: Client, sandbox: Sandbox, tool: str, arguments: dict[str, Any], needle: str
) -> None:
    """A huge or numerous argument name, or many problems, is named in part: the answer stays a few lines."""
    text = await refused(client, sandbox, tool, arguments)
    assert needle in text
    assert len(text) < 1000


OVER = MAX_CHAT_MESSAGE_CHARS + 1
SUITE = "cases: [{name: hi, turns: [{say: hi}]}]"
HISTORY = {"conversation_id": CID}
STRICT: list[tuple[str, dict[str, Any], str]] = [
    ("run_test_suite", {"suite": SUITE, "repeat": 21}, "repeat must be at most 20; it is 21."),
    ("run_test_suite", {"suite": SUITE, "repeat": 0}, "repeat must be at least 1; it is 0."),
    ("run_test_suite", {"suite": SUITE, "repeat": "3"}, "repeat must be a whole number, not a string."),
    ("run_test_suite", {"suite": SUITE, "repeat": True}, "repeat must be a whole number, not a boolean."),
    ("run_test_suite", {"suite": SUITE, "repeat": 2.5}, "repeat must be a whole number, not the number 2.5."),
    ("run_test_suite", {"suite": "x" * OVER}, f"suite is {OVER:,} characters; the limit is {OVER - 1:,} characters."),
    ("list_escalations", {"limit": 0}, "limit must be at least 1; it is 0."),
    ("list_escalations", {"limit": 101}, "limit must be at most 100; it is 101."),
    ("list_escalations", {"limit": "abc"}, "limit must be a whole number, not a string."),
    ("list_escalations", {"limit": "5"}, "limit must be a whole number, not a string."),
    ("list_escalations", {"limit": True}, "limit must be a whole number, not a boolean."),
    ("list_escalations", {"since": 5}, "since must be a string, not the number 5."),
    ("get_conversation_messages", {**HISTORY, "limit": "5"}, "limit must be a whole number, not a string."),
    ("get_conversation_messages", {**HISTORY, "limit": False}, "limit must be a whole number, not a boolean."),
    ("get_conversation_messages", {**HISTORY, "limit": 10**400}, "limit must be at most 500; it is far more."),
    ("get_conversation_messages", {**HISTORY, "before": "3"}, "before must be a whole number, not a string."),
    ("lexi_chat", {"message": "hi", "allow_tools": "true"}, "allow_tools must be true or false, not a string."),
    ("lexi_chat", {"message": "hi", "allow_tools": 1}, "allow_tools must be true or false, not the number 1."),
]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_every_tool_refuses_mistyped_or_out_of_range_numbers_by_name(
    sandbox: Sandbox, tmp_path: Path, mode: Literal["legacy", "auto"]
) -> None:
    """Strict everywhere, in both protocol eras: "5" or true is not a whole number and 1 is not true; each answer
    names the argument and what is allowed, and nothing is sent upstream."""
    settings = sandbox_settings_for(sandbox, webhook_secret=SECRET, state_dir=tmp_path)
    async with Client(build_server(settings), mode=mode) as client:
        for tool, arguments, expected in STRICT:
            text = await refused(client, sandbox, tool, arguments)
            assert text == expected, (tool, arguments)
            assert "pydantic" not in text
            assert "Error executing tool" not in text


async def test_lists_sent_as_json_text_are_still_read(client: Client, sandbox: Sandbox) -> None:
    """Strict numbers do not undo the SDK's reading of a list sent as JSON text (some hosts send lists so)."""
    result = await client.call_tool("run_customer_scenario", {"messages": '["Hello"]'})
    assert not result.is_error
