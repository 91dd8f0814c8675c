"""The MCP server through the official `mcp.Client` (in-process), against the sandbox over loopback HTTP."""

from __future__ import annotations

import itertools
import json
import socket
import uuid
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.types import CallToolResult

import lexey_mcp.pacing
from lexey_mcp.models import ChatResult, ConversationMessages, LexiResult
from lexey_mcp.paths import MCP_PATH
from lexey_mcp.sandbox import Fault, Sandbox
from lexey_mcp.server import ServerOptions, build_server
from lexey_mcp.server.tools.customer import ScenarioResult
from tests.conftest import sandbox_settings_for
from tests.reading import TOOL_NAMES, text_of

pytestmark = pytest.mark.anyio


async def call(client: Client, tool: str, arguments: dict[str, Any], **kwargs: Any) -> CallToolResult:
    return await client.call_tool(tool, arguments, **kwargs)


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_tools_list_is_complete_truthful_and_compact(sandbox: Sandbox, mode: str) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox)), mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOL_NAMES
    for tool in tools.values():
        assert tool.title
        assert tool.description
        assert "\n    " not in tool.description  # docstring indentation stripped
        assert tool.output_schema
        assert tool.annotations
    hints = {
        n: (t.annotations.read_only_hint, t.annotations.destructive_hint) for n, t in tools.items() if t.annotations
    }
    assert hints["get_conversation_messages"] == (True, False)
    assert hints["configure_org"] == (False, True)
    assert hints["list_escalations"] == (True, False)
    readers = {"get_conversation_messages", "list_escalations"}
    assert all(not read_only for n, (read_only, _) in hints.items() if n not in readers)
    # What a model reads of them, in characters, and the constraints kept: tests/test_model_reads.py.
    assert tools["lexi_chat"].input_schema["properties"]["message"]["maxLength"] == 12_000


async def test_create_then_send_then_read_history(sandbox: Sandbox, mode: str) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox)), mode=mode) as client:
        created = await call(client, "create_conversation", {})
        assert not created.is_error
        assert created.structured_content is not None
        cid = created.structured_content["conversation_id"]
        uuid.UUID(cid)
        sent = await call(
            client, "send_customer_message", {"message": "What are your business hours?", "conversation_id": cid}
        )
        history = await call(client, "get_conversation_messages", {"conversation_id": cid})
    assert not sent.is_error
    result = ChatResult.model_validate(sent.structured_content)
    assert (result.outcome, result.conversation_id, result.missing_event_ids) == ("complete", cid, [])
    assert result.text
    assert result.request_id
    assert text_of(sent).startswith("[Support agent reply; outcome complete")
    assert result.text in text_of(sent)
    messages = ConversationMessages.model_validate(history.structured_content).messages
    assert [(m.role, m.content) for m in messages] == [
        ("user", "What are your business hours?"),
        ("assistant", result.text),
    ]


async def test_send_without_conversation_starts_one(sandbox: Sandbox) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        first = await call(client, "send_customer_message", {"message": "Hello"})
        second = await call(client, "send_customer_message", {"message": "Hello"})
    assert first.structured_content is not None
    assert second.structured_content is not None
    assert first.structured_content["conversation_id"] != second.structured_content["conversation_id"]


async def test_progress_carries_the_reply_as_it_grows(anyio_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from lexey_mcp.sandbox import SandboxConfig

    monkeypatch.setattr(lexey_mcp.pacing, "PROGRESS_INTERVAL", 0.0)  # a message per chunk, as the rate allows

    async with Sandbox(SandboxConfig(delay=0.01)) as sb:
        seen: list[tuple[float, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, message))

        async with Client(build_server(sandbox_settings_for(sb))) as client:
            configured = await call(
                client,
                "configure_org",
                {
                    "instruction": "Add a knowledge article about shipping: We ship worldwide within five working days "
                    "from our warehouse in Leeds, and every order over fifty pounds ships free of charge."
                },
            )
            assert not configured.is_error
            seen.clear()
            result = await call(
                client,
                "send_customer_message",
                {"message": "How long does shipping take?"},
                progress_callback=on_progress,
            )
    final = ChatResult.model_validate(result.structured_content).text
    assert len(seen) >= 2
    # The reply so far, each message longer; the whole reply comes with the result (no closing progress repeats it).
    assert all(final.startswith(message or "-") and progress == len(message or "") for progress, message in seen)
    assert all(a[0] < b[0] for a, b in itertools.pairwise(seen))
    messages = [m for _, m in seen]
    assert all(m is not None and final.startswith(m) for m in messages)
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)


async def test_configure_then_scenario_escalates_then_analytics(sandbox: Sandbox, mode: str) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox)), mode=mode) as client:
        for instruction in (
            "Our business is a pet supplies store called Pawsome.",
            "Add a knowledge article about returns: Unopened items can be returned within 30 days for a full refund.",
            "Add these escalation rules: always escalate if a customer mentions a lawyer or chargeback.",
        ):
            reply = await call(client, "configure_org", {"instruction": instruction})
            assert not reply.is_error, text_of(reply)
        scenario = await call(
            client,
            "run_customer_scenario",
            {"messages": ["Can I return an unopened item?", "Fine, I'm talking to my lawyer about a chargeback."]},
        )
        review = await call(client, "configure_org", {"instruction": "How have we performed over the last 7 days?"})
    result = ScenarioResult.model_validate(scenario.structured_content)
    assert result.escalated
    assert [t.conversation_status for t in result.turns] == [None, "escalated"]
    assert "30 days" in result.turns[0].text
    # The turns are in the scenario's conversation, said once: no turn repeats it.
    assert scenario.structured_content is not None
    assert [set(t) & {"conversation_id"} for t in scenario.structured_content["turns"]] == [set(), set()]
    assert text_of(scenario).count(result.conversation_id) == 1
    assert "1 escalation" in ChatResult.model_validate(review.structured_content).text


async def test_lexi_with_and_without_tools(sandbox: Sandbox) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        with_tools = await call(client, "lexi_chat", {"message": "Who is the contact at Acme?"})
        no_tools = await call(
            client,
            "lexi_chat",
            {"message": "Who is the contact at Acme?", "allow_tools": False, "context": {"page": "contacts"}},
        )
    tooled = LexiResult.model_validate(with_tools.structured_content)
    plain = LexiResult.model_validate(no_tools.structured_content)
    assert tooled.outcome == plain.outcome == "complete"
    assert tooled.tool_steps
    assert not plain.tool_steps
    assert tooled.credits_remaining is not None
    assert tooled.message_id
    assert tooled.idempotency_key
    assert tooled.rate_limit is not None
    assert tooled.rate_limit.reset
    uuid.UUID(tooled.conversation_id or "")
    assert sandbox.last_headers["lexi"]["idempotency-key"] == plain.idempotency_key


async def test_lexi_idempotency_key_replays_without_charge(sandbox: Sandbox) -> None:
    key = str(uuid.uuid4())
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        first = LexiResult.model_validate(
            (
                await call(client, "lexi_chat", {"message": "Deals in negotiation?", "idempotency_key": key})
            ).structured_content
        )
        again = LexiResult.model_validate(
            (
                await call(client, "lexi_chat", {"message": "Deals in negotiation?", "idempotency_key": key})
            ).structured_content
        )
    assert (again.message_id, again.text, again.credits_remaining) == (
        first.message_id,
        first.text,
        first.credits_remaining,
    )


BAD_INPUT = [
    ("send_customer_message", {"message": ""}, "message must not be empty."),
    ("send_customer_message", {"message": "hi", "conversation_id": "../../admin"}, "must be a UUID"),
    ("send_customer_message", {"message": "   "}, "message is blank"),
    ("send_customer_message", {"message": "bell\x07"}, "message contains control characters"),
    ("send_customer_message", {}, "send_customer_message needs message; it is missing."),
    ("send_customer_message", {"message": "x" * 100_001}, "message is 100,001 characters; the limit is 100,000"),
    ("send_customer_message", {"message": "hi", "conversation_id": 5}, "conversation_id must be a string, not the"),
    ("get_conversation_messages", {"conversation_id": "not-a-uuid"}, "must be a UUID"),
    ("get_conversation_messages", {"conversation_id": str(uuid.uuid4()), "limit": 0}, "limit must be at least 1;"),
    ("get_conversation_messages", {"conversation_id": str(uuid.uuid4()), "limit": 501}, "limit must be at most 500"),
    ("get_conversation_messages", {"conversation_id": str(uuid.uuid4()), "before": -1}, "before must be at least 0"),
    ("lexi_chat", {"message": "x" * 12_001}, "message is 12,001 characters; the limit is 12,000 characters."),
    (
        "lexi_chat",
        {"message": "hi", "context": {"owner": "me"}},
        "context has an unknown key 'owner'; accepted: company_id, contact_id, deal_id, matter_id, page.",
    ),
    ("lexi_chat", {"message": "hi", "context": {"page": ""}}, "context.page must not be empty."),
    ("lexi_chat", {"message": "hi", "context": "deal"}, "context must be an object, not a string."),
    ("lexi_chat", {"message": "hi", "allow_tools": "maybe"}, "allow_tools must be true or false, not a string."),
    ("lexi_chat", {"message": "hi", "idempotency_key": "again"}, "idempotency_key must be a UUID"),
    ("run_customer_scenario", {"messages": []}, "messages takes at least 1 item(s); it has 0."),
    ("run_customer_scenario", {"messages": ["hi"] * 21}, "messages takes at most 20 item(s); it has 21."),
    ("run_customer_scenario", {"messages": ["hi", " "]}, "messages item 2 is blank"),
    ("run_customer_scenario", {"messages": ["hi", 3]}, "messages item 2 must be a string"),
    ("run_customer_scenario", {"messages": "hi"}, "messages must be a list of strings, not a string."),
    ("configure_org", {"instruction": "\n\t"}, "instruction is blank"),
    ("configure_org", {}, "configure_org needs instruction; it is missing."),
    ("send_customer_message", {"message": "lone \ud800 here"}, "message is not valid Unicode text"),
    ("send_customer_message", {"message": "hi", "conversationId": str(uuid.uuid4())}, "Unknown argument"),
    ("configure_org", {"instructions": "Set our agent name to Ava"}, "Unknown argument"),
    ("lexi_chat", {"message": 42}, "message must be a string, not the number 42."),
]


@pytest.mark.parametrize(("tool", "arguments", "needle"), BAD_INPUT)
async def test_bad_input_is_a_tool_error_before_any_request(
    sandbox: Sandbox, tool: str, arguments: dict[str, Any], needle: str
) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        before = sandbox.stats.requests
        result = await call(client, tool, arguments)
    assert result.is_error
    assert needle in text_of(result)
    assert "pydantic" not in text_of(result)
    assert "Error executing tool" not in text_of(result)
    assert sandbox.stats.requests == before


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("customer_key", None, "LEXEY_CUSTOMER_KEY is not set"),
        ("customer_key", "lxm_WrongTypeOfKey123", "LEXEY_CUSTOMER_KEY must be a Lexey customer key"),
    ],
)
async def test_missing_or_wrong_key_is_a_clear_tool_error(
    sandbox: Sandbox, field: str, value: str | None, needle: str
) -> None:
    server = build_server(sandbox_settings_for(sandbox, **{field: value}))
    async with Client(server) as client:
        result = await call(client, "send_customer_message", {"message": "hi"})
        lexi = await call(client, "lexi_chat", {"message": "hi"})
    assert result.is_error
    assert needle in text_of(result)
    assert "WrongTypeOfKey" not in text_of(result)
    assert not lexi.is_error  # the other tools keep working
    assert sandbox.stats.requests == 1


@pytest.mark.parametrize(
    ("status", "needle"),
    [
        (402, "HTTP 402"),
        (403, "set LEXEY_CUSTOMER_KEY to an lxc_ key"),
        (429, "start a new conversation"),
        (500, "try again"),
    ],
)
async def test_pre_stream_api_errors_are_tool_errors_saying_what_to_do(
    sandbox: Sandbox, status: int, needle: str
) -> None:
    cid = str(uuid.uuid4())
    sandbox.inject(Fault(target="customer", status=status))
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        result = await call(client, "send_customer_message", {"message": "hi", "conversation_id": cid})
    assert result.is_error
    assert needle in text_of(result)


async def test_html_error_page_is_not_echoed(sandbox: Sandbox) -> None:
    sandbox.inject(Fault(target="customer", status=502, html_error=True))
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        result = await call(client, "send_customer_message", {"message": "hi", "conversation_id": str(uuid.uuid4())})
    assert result.is_error
    assert "<" not in text_of(result)
    assert "HTTP 502" in text_of(result)


async def test_unknown_conversation_is_a_tool_error(sandbox: Sandbox) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        result = await call(client, "get_conversation_messages", {"conversation_id": str(uuid.uuid4())})
    assert result.is_error
    assert "HTTP 404" in text_of(result)


@pytest.mark.parametrize(
    ("fault", "outcome", "reason"),
    [
        (Fault(target="customer", error_at=2), "error", None),
        (Fault(target="customer", drop_after=2), "partial", "connection_lost"),
        (Fault(target="customer", end_without_done=True), "partial", "ended_without_done"),
        (Fault(target="customer", id_gaps=True), "complete", None),
    ],
)
async def test_in_stream_trouble_is_a_normal_result(
    sandbox: Sandbox, fault: Fault, outcome: str, reason: str | None
) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        cid = (await call(client, "create_conversation", {})).structured_content or {}
        sandbox.inject(fault)
        result = await call(
            client,
            "send_customer_message",
            {"message": "Tell me about your company please", "conversation_id": cid["conversation_id"]},
        )
    assert not result.is_error
    chat = ChatResult.model_validate(result.structured_content)
    assert (chat.outcome, chat.partial_reason) == (outcome, reason)
    if fault.id_gaps:
        assert chat.missing_event_ids
    if fault.drop_after or fault.error_at:
        assert chat.text  # the text before the trouble is kept


async def test_lexi_429_then_success_is_retried_with_the_same_key(sandbox: Sandbox) -> None:
    sandbox.inject(Fault(target="lexi", status=429, retry_after="0"))
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        result = await call(client, "lexi_chat", {"message": "List open deals"})
    assert not result.is_error
    assert LexiResult.model_validate(result.structured_content).outcome == "complete"


async def test_cancel_mid_stream_closes_the_upstream_connection(sandbox: Sandbox, mode: str) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox)), mode=mode) as client:
        created = await call(client, "create_conversation", {})
        cid = (created.structured_content or {})["conversation_id"]
        sandbox.inject(Fault(target="customer", stall_after=1, stall_seconds=30))
        got_progress = anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            got_progress.set()

        async with anyio.create_task_group() as tg:

            async def run() -> None:
                await call(
                    client,
                    "send_customer_message",
                    {"message": "Hello there", "conversation_id": cid},
                    progress_callback=on_progress,
                )

            tg.start_soon(run)
            with anyio.fail_after(5):
                await got_progress.wait()
            assert sandbox.stats.open_streams == 1
            tg.cancel_scope.cancel()
        with anyio.fail_after(0.5):
            reason = await sandbox.wait_for_stream_closed(timeout=0.5)
        assert reason in ("disconnected", "cancelled")
        assert sandbox.stats.open_streams == 0
        after = await call(client, "create_conversation", {})  # the session still works
        assert not after.is_error


@pytest.mark.parametrize(
    ("toolsets", "read_only", "expected"),
    [
        (["lexi"], False, {"lexi_chat"}),
        (["management"], False, {"configure_org"}),
        (
            ["customer"],
            False,
            {
                "create_conversation",
                "send_customer_message",
                "get_conversation_messages",
                "run_customer_scenario",
                "run_test_suite",
            },
        ),
        (["customer", "management", "lexi"], True, {"get_conversation_messages"}),
        (["lexi"], True, set()),
        (["events"], True, {"list_escalations"}),
    ],
)
async def test_toolsets_and_read_only_change_the_list(
    sandbox: Sandbox, toolsets: list[Any], read_only: bool, expected: set[str]
) -> None:
    server = build_server(sandbox_settings_for(sandbox), ServerOptions(toolsets=toolsets, read_only=read_only))
    async with Client(server) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        removed = await call(client, "configure_org", {"instruction": "Set our agent name to Ava"})
    assert names == expected
    assert removed.is_error == ("configure_org" not in expected)


async def test_history_resource(sandbox: Sandbox, mode: str) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox)), mode=mode) as client:
        sent = await call(client, "send_customer_message", {"message": "Hi there"})
        cid = (sent.structured_content or {})["conversation_id"]
        templates = (await client.list_resource_templates()).resource_templates
        resource = await client.read_resource(f"lexey://conversations/{cid}/messages")
        with pytest.raises(MCPError):
            await client.read_resource("lexey://conversations/../messages")
        with pytest.raises(MCPError):
            await client.read_resource(f"lexey://conversations/{uuid.uuid4()}/messages")
    assert [t.uri_template for t in templates] == ["lexey://conversations/{conversation_id}/messages"]
    content = resource.contents[0]
    assert content.mime_type == "application/json"
    body = json.loads(getattr(content, "text", ""))
    assert body["conversation_id"] == cid
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]


async def test_workflow_prompt(sandbox: Sandbox) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        prompts = (await client.list_prompts()).prompts
        prompt = await client.get_prompt("e2e_workflow", {"business": "A bakery in Leeds."})
    assert [p.name for p in prompts] == ["e2e_workflow"]
    text = getattr(prompt.messages[0].content, "text", "")
    assert "A bakery in Leeds." in text
    assert "run_customer_scenario" in text


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_prompt_asked_with_an_unknown_argument_or_name_is_answered_in_our_voice(
    sandbox: Sandbox, mode: str
) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox)), mode=mode) as client:
        with pytest.raises(MCPError) as unknown_argument:
            await client.get_prompt("e2e_workflow", {"busines": "A bakery"})
        with pytest.raises(MCPError) as unknown_prompt:
            await client.get_prompt("e2e_workfow", {})
    assert str(unknown_argument.value) == "Unknown argument(s) for e2e_workflow: busines. Accepted: business, scenario."
    assert str(unknown_prompt.value) == "There is no prompt 'e2e_workfow'; prompts: e2e_workflow."


async def test_sandbox_mode_needs_no_keys(anyio_backend: str) -> None:
    from lexey_mcp.config import Settings

    bare = Settings(
        _env_file=None,
        customer_key=None,
        management_key=None,
        lexi_api_key=None,
        base_url="https://lexey.invalid/api/v1",
    )
    async with Client(build_server(bare, ServerOptions(sandbox=True, sandbox_delay=0))) as client:
        results = [
            await call(client, "send_customer_message", {"message": "hello"}),
            await call(client, "configure_org", {"instruction": "Set our agent name to 'Ava'"}),
            await call(client, "lexi_chat", {"message": "Who works at Acme?"}),
        ]
    assert [r.is_error for r in results] == [False, False, False]


async def test_over_http_calls_without_a_progress_token_leave_the_progress_rate_to_those_with_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two progress calls a second for the whole server: one stream that reports gets them all (every 0.5 s); were the
    # nine calls without a token counted too, it would get one every 5 s, and its 2.4 s reply only the first and the
    # last words.
    import uvicorn

    from lexey_mcp.sandbox import SandboxConfig
    from tests.processes import mcp_client

    monkeypatch.setattr(lexey_mcp.pacing, "PROGRESS_RATE", 2.0)
    async with Sandbox(SandboxConfig(delay=0.1)) as sb:
        app = build_server(sandbox_settings_for(sb)).streamable_http_app(streamable_http_path=MCP_PATH)
        served = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
        notifications = 0

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            nonlocal notifications
            notifications += 1

        async with anyio.create_task_group() as group:
            listener = socket.create_server(("127.0.0.1", 0))  # listening now: a connection waits until it is served
            group.start_soon(served.serve, [listener])
            async with mcp_client(f"http://127.0.0.1:{listener.getsockname()[1]}{MCP_PATH}") as client:

                async def ask(with_progress: bool) -> None:
                    result = await client.call_tool(
                        "send_customer_message",
                        {"message": "Do you sell gift cards?"},
                        progress_callback=on_progress if with_progress else None,
                    )
                    assert not result.is_error

                async with anyio.create_task_group() as calls:
                    for n in range(10):
                        calls.start_soon(ask, n == 0)
            served.should_exit = True
    assert notifications >= 4
