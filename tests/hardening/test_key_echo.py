"""An upstream (or a proxy) that echoes the request's key in every field it controls: the key never reaches the
agent, in any case, through results (structured and text), tool errors, progress or resources."""

from __future__ import annotations

import html
import json
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client import advertise
from mcp.client.context import ClientRequestContext
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import ElicitRequestParams, ElicitResult

from lexey_mcp.sandbox import Fault, Sandbox
from lexey_mcp.server import ServerOptions, build_server
from lexey_mcp.server.view import HTML_KEY
from tests.conftest import sandbox_settings_for
from tests.reading import leaks
from tests.streams import (
    ALL_KEYS,
    CID,
    CUSTOMER_KEY,
    LEXI_KEY,
    MANAGEMENT_KEY,
    Upstream,
    chat_event,
    lexi_event,
    reply,
    settings,
    sse,
)

pytestmark = pytest.mark.anyio


class Seen:
    """Everything the client received: results, errors, progress messages, resources."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.parts.append(message or "")

    async def call(self, client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await client.call_tool(tool, arguments, progress_callback=self.progress)
        dumped = result.model_dump(mode="json")
        self.parts.append(json.dumps(dumped, ensure_ascii=False))
        return dumped

    def text(self) -> str:
        return "\n".join(self.parts)


def echoing_chat(key: str) -> list[bytes]:
    return [
        chat_event(1, {"type": "delta", "text": f"Your key is {key}; glued:x{key}x; lower {key.lower()}. "}),
        chat_event(2, {"type": "status", "status": key}),
        chat_event(3, {"type": "status", "status": f"escalated_{key.lower()}"}),
        chat_event(4, {"type": "error", "message": f"refused {key.upper()}", "code": f"bad_{key}"}),
        chat_event(5, "[DONE]"),
    ]


ECHOING_LEXI = [
    lexi_event("thinking", {"text": f"the caller used {LEXI_KEY}"}),
    lexi_event("tool_step", {"tool": LEXI_KEY, "status": f"done:{LEXI_KEY}", "summary": LEXI_KEY.lower()}),
    lexi_event("text", {"delta": f"Hello {LEXI_KEY}", "conversation_id": LEXI_KEY}),
    lexi_event("done", {"message_id": LEXI_KEY, "credits_remaining": 3}),
    b"data: [DONE]\n\n",
]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_keys_echoed_in_stream_fields_history_and_resources_never_arrive(sandbox: Sandbox, mode: str) -> None:
    seen = Seen()
    async with Client(build_server(sandbox_settings_for(sandbox)), mode=mode) as client:
        stored = await seen.call(client, "send_customer_message", {"message": f"my key is {CUSTOMER_KEY}"})
        cid = stored["structured_content"]["conversation_id"]  # its history now holds the key
        sandbox.inject(Fault(target="customer", raw_chunks=echoing_chat(CUSTOMER_KEY)))
        sent = await seen.call(client, "send_customer_message", {"message": "hi", "conversation_id": cid})
        sandbox.inject(Fault(target="management", raw_chunks=echoing_chat(MANAGEMENT_KEY)))
        configured = await seen.call(client, "configure_org", {"instruction": "Set our agent name to Ava"})
        sandbox.inject(Fault(target="lexi", raw_chunks=ECHOING_LEXI))
        lexi = await seen.call(client, "lexi_chat", {"message": "Who is Jane?"})
        sandbox.inject(Fault(target="customer", raw_chunks=echoing_chat(CUSTOMER_KEY)))
        scenario = await seen.call(client, "run_customer_scenario", {"messages": ["hi", f"again {CUSTOMER_KEY}"]})
        history = await seen.call(client, "get_conversation_messages", {"conversation_id": cid})
        resource = await client.read_resource(f"lexey://conversations/{cid}/messages")
        seen.parts.append(json.dumps(resource.model_dump(mode="json"), ensure_ascii=False))
    # The echoes did arrive (so each field was exercised), redacted.
    result = sent["structured_content"]
    assert "[redacted]" in result["text"]
    assert result["conversation_status"] == "escalated_[redacted]"
    assert result["status_events"][0] == "[redacted]"
    assert "[redacted]" in result["error"]["code"]
    assert "[redacted]" in configured["structured_content"]["text"]
    lexi_result = lexi["structured_content"]
    assert lexi_result["conversation_id"] == lexi_result["message_id"] == "[redacted]"
    assert lexi_result["tool_steps"][0]["tool"] == "[redacted]"
    assert "[redacted]" in lexi_result["thinking"][0]
    assert len(scenario["structured_content"]["turns"]) == 2
    assert "[redacted]" in history["structured_content"]["messages"][0]["content"]
    assert any("[redacted]" in part for part in seen.parts[:-1] if not part.startswith("{"))  # a progress message
    assert leaks(seen.text(), ALL_KEYS, any_case=True) == []


async def test_keys_echoed_in_headers_ids_and_protocol_errors_never_arrive() -> None:
    """Byte-level upstream answers (MockTransport): a created conversation id, an X-Request-ID, a redirect
    Location and a Content-Type holding the key, and a Location host the URL parser lower-cases."""
    upstream = Upstream(
        reply(201, {"conversationId": CUSTOMER_KEY}),
        sse(
            chat_event(1, {"type": "delta", "text": "ok"}) + chat_event(2, "[DONE]"),
            headers={"x-request-id": f"req-{CUSTOMER_KEY}"},
        ),
        reply(302, b"", headers={"location": f"https://{MANAGEMENT_KEY}.evil.test/x?k={MANAGEMENT_KEY}"}),
        reply(200, b"<html>", content_type=f"text/html; charset=utf-8; token={LEXI_KEY}"),
        reply(200, b"<html>", content_type=f"{LEXI_KEY.upper()}/html"),
    )
    seen = Seen()
    async with Client(
        build_server(settings(max_retries=0), ServerOptions(http_transport=upstream.transport()))
    ) as client:
        created = await seen.call(client, "create_conversation", {})
        sent = await seen.call(
            client,
            "send_customer_message",
            {"message": "hi", "conversation_id": CID},
        )
        redirected = await seen.call(client, "configure_org", {"instruction": "Set our agent name to Ava"})
        not_a_stream = await seen.call(client, "lexi_chat", {"message": "hi"})
        shouting = await seen.call(client, "lexi_chat", {"message": "hi"})
    assert len(upstream.requests) == 5
    assert created["structured_content"]["conversation_id"] == "[redacted]"
    assert sent["structured_content"]["request_id"] == "req-[redacted]"
    assert redirected["is_error"]
    assert "redirect" in redirected["content"][0]["text"]
    assert not_a_stream["is_error"]
    assert "instead of an event stream" in not_a_stream["content"][0]["text"]
    assert shouting["is_error"]
    assert leaks(seen.text(), ALL_KEYS, any_case=True) == []


async def test_a_key_cut_by_the_result_size_limit_leaves_no_fragment(sandbox: Sandbox) -> None:
    """The text block is cut after redaction: a cut can never leave part of a key in what is shown."""
    text = "x" * 990 + CUSTOMER_KEY + " tail " * 50
    sandbox.inject(
        Fault(target="customer", raw_chunks=[chat_event(1, {"type": "delta", "text": text}), chat_event(2, "[DONE]")])
    )
    async with Client(build_server(sandbox_settings_for(sandbox, max_result_chars=1000))) as client:
        result = await client.call_tool("send_customer_message", {"message": "hi"})
    assert leaks(json.dumps(result.model_dump(mode="json")), ALL_KEYS, any_case=True) == []


def test_redaction_matches_any_case_and_glued_key_shapes() -> None:
    from lexey_mcp.redaction import redact

    assert redact(f"a{CUSTOMER_KEY.lower()}b", [CUSTOMER_KEY]) == "a[redacted]b"
    assert redact("code bad_wbk_Zz9Unknown-key_1 end") == "code bad_wbk_[redacted] end"
    assert redact("LXM_SOMEKEYWEDONOTKNOW") == "LXM_[redacted]"
    assert redact("flxc_word stays") == "flxc_word stays"
    assert httpx2.URL(f"https://{MANAGEMENT_KEY}.evil.test/").host == MANAGEMENT_KEY.lower() + ".evil.test"


async def test_progress_of_a_long_reply_shows_no_fragment_of_a_key(sandbox: Sandbox) -> None:
    """Progress shows the reply's tail; a key straddling where that tail starts leaves no part of itself."""
    seen = Seen()
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        for lead in range(0, 150, 3):  # the key at every offset around where the tail starts
            text = "x" * 100 + CUSTOMER_KEY + "y" * (3950 + lead)
            chunks = [chat_event(1, {"type": "delta", "text": text}), chat_event(2, "[DONE]")]
            sandbox.inject(Fault(target="customer", raw_chunks=chunks))
            await seen.call(client, "send_customer_message", {"message": "hi"})
    assert sum(1 for part in seen.parts if part.startswith("…")) >= 40  # the tails were shown
    assert leaks(seen.text(), ALL_KEYS, any_case=True) == []


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_keys_percent_encoded_or_json_escaped_never_arrive(sandbox: Sandbox, mode: str) -> None:
    """A proxy may send a key back URL-encoded or inside JSON text; another tenant's key may sit after a newline,
    which the history resource's JSON text spells `\\n`."""
    encoded = CUSTOMER_KEY.replace("_", "%5F")
    escaped = CUSTOMER_KEY.upper().replace("_", "\\u005f")
    chunks = [chat_event(1, {"type": "delta", "text": f"url ?k={encoded} json {escaped}"}), chat_event(2, "[DONE]")]
    sandbox.inject(Fault(target="customer", raw_chunks=chunks))
    other_tenant = "lxc_OtherTenantKey0123456789"
    seen = Seen()
    async with Client(build_server(sandbox_settings_for(sandbox)), mode=mode) as client:
        echoed = await seen.call(client, "send_customer_message", {"message": "hi"})
        stored = await seen.call(client, "send_customer_message", {"message": f"two lines\n{other_tenant}"})
        cid = stored["structured_content"]["conversation_id"]
        resource = await client.read_resource(f"lexey://conversations/{cid}/messages")
        seen.parts.append(json.dumps(resource.model_dump(mode="json")))
    assert echoed["structured_content"]["text"] == "url ?k=[redacted] json [redacted]"
    assert "OtherTenant" not in seen.text()
    assert leaks(seen.text().replace("%5F", "_").replace("\\\\u005f", "_"), ALL_KEYS, any_case=True) == []


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_key_in_an_instruction_is_not_shown_in_the_confirmation(sandbox: Sandbox, mode: str) -> None:
    """The confirmation question is a request to the client, outside the result choke point: it is redacted too."""
    asked: list[str] = []

    async def answer(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.model_dump_json())
        return ElicitResult(action="decline")

    server = build_server(sandbox_settings_for(sandbox), ServerOptions(confirm_changes=True))
    async with Client(server, mode=mode, elicitation_callback=answer) as client:
        await client.call_tool("configure_org", {"instruction": f"Use the key {MANAGEMENT_KEY} for the widget"})
    assert len(asked) == 1
    assert "Use the key [redacted] for the widget" in asked[0]
    assert leaks(asked[0], ALL_KEYS, any_case=True) == []


async def test_a_key_split_across_thinking_deltas_never_arrives(sandbox: Sandbox) -> None:
    """Lexi streams its thinking in pieces, one list item each: a key cut across pieces is redacted in every piece."""
    pieces = [f"the caller used {LEXI_KEY[:7]}", LEXI_KEY[7:15], f"{LEXI_KEY[15:]} to ask"]
    thinking = [lexi_event("thinking", {"text": piece}) for piece in pieces]
    done = [lexi_event("text", {"delta": "Hi"}), lexi_event("done", {"credits_remaining": 3}), b"data: [DONE]\n\n"]
    sandbox.inject(Fault(target="lexi", raw_chunks=[*thinking, *done]))
    seen = Seen()
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        lexi = await seen.call(client, "lexi_chat", {"message": "Who is Jane?"})
    assert lexi["structured_content"]["thinking"] == ["the caller used [redacted]", "[redacted]", "[redacted] to ask"]
    assert all(piece not in seen.text() for piece in (LEXI_KEY[:7], LEXI_KEY[7:15], LEXI_KEY[15:]))


@pytest.mark.parametrize("tool", ["run_customer_scenario", "run_test_suite"])
async def test_a_key_with_html_characters_never_reaches_the_apps_view(tool: str) -> None:
    """The view's page travels in the result's `_meta`, rendered: HTML spells `& < > " '` as entities, which the
    outgoing redaction could not recognise, so the page is rendered from redacted text."""
    key = "lxc_Ab1&x<y>z'Q\"W9"
    upstream = Upstream(reply(201, {"conversationId": CID}), sse(echoing_chat(key)))
    server = build_server(settings(customer_key=key, max_retries=0), ServerOptions(http_transport=upstream.transport()))
    arguments: dict[str, Any] = (
        {"messages": [f"my key is {key}"]}
        if tool == "run_customer_scenario"
        else {"suite": 'cases: [{name: echo, turns: [{say: "my key is ' + key.replace('"', '\\"') + '"}]}]'}
    )
    async with Client(server, extensions=[advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})]) as client:
        result = await client.call_tool(tool, arguments)
    assert result.meta is not None
    page = result.meta[HTML_KEY]
    assert "[redacted]" in page  # the echo did arrive, redacted
    assert leaks(page, [key, html.escape(key), html.escape(key, quote=False)], any_case=True) == []
    assert leaks(json.dumps(result.model_dump(mode="json")), [key], any_case=True) == []
