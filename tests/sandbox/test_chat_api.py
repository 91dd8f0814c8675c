"""Customer and management chat APIs over real HTTP: status codes, headers, exact SSE bytes, error bodies."""

from __future__ import annotations

import json
import uuid

import httpx2
import pytest

from lexey_mcp.sandbox import Sandbox, SandboxConfig

from .helpers import CUSTOMER, HEADERS, ISO_UTC, MANAGEMENT, REQUEST_ID, chat_events, chat_text, conversation, send

pytestmark = pytest.mark.anyio
UNKNOWN = (
    "I'm sorry, I don't know the answer to that. There is nothing about it in my knowledge base yet, "
    "so I'd rather not guess."
)


@pytest.mark.parametrize("kind", ["customer", "management"])
async def test_create_conversation(sb: Sandbox, client: httpx2.AsyncClient, kind: str) -> None:
    response = await client.post(f"{sb.base_url}/{kind}/conversations", headers=HEADERS[kind])
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert REQUEST_ID.fullmatch(response.headers["x-request-id"])
    (key,) = response.json()
    assert key == "conversationId"
    assert uuid.UUID(response.json()["conversationId"]).version == 4


async def test_send_message_exact_wire_format(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id = await conversation(client, sb)
    response = await send(client, sb, conversation_id, "What are your opening hours?")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["transfer-encoding"] == "chunked"
    assert REQUEST_ID.fullmatch(response.headers["x-request-id"])
    words = UNKNOWN.split(" ")
    deltas = [w + " " for w in words[:-1]] + [words[-1]]
    expected = "".join(
        f"id: {i}\ndata: {json.dumps({'type': 'delta', 'text': d}, separators=(',', ':'))}\n\n"
        for i, d in enumerate(deltas, 1)
    )
    expected += f"id: {len(deltas) + 1}\ndata: [DONE]\n\n"
    assert response.text == expected


async def test_request_ids_differ(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    first = await client.post(f"{sb.base_url}/customer/conversations", headers=CUSTOMER)
    second = await client.post(f"{sb.base_url}/customer/conversations", headers=CUSTOMER)
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("kind", ["customer", "management"])
async def test_history(sb: Sandbox, client: httpx2.AsyncClient, kind: str) -> None:
    conversation_id = await conversation(client, sb, kind)
    reply = await send(client, sb, conversation_id, "hello there", kind)
    response = await client.get(f"{sb.base_url}/{kind}/conversations/{conversation_id}/messages", headers=HEADERS[kind])
    assert response.status_code == 200
    messages = response.json()["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "hello there"),
        ("assistant", chat_text(reply.text)),
    ]
    assert all(set(m) == {"role", "content", "createdAt"} and ISO_UTC.fullmatch(m["createdAt"]) for m in messages)


async def test_empty_history(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id = await conversation(client, sb)
    response = await client.get(f"{sb.base_url}/customer/conversations/{conversation_id}/messages", headers=CUSTOMER)
    assert response.json() == {"messages": []}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "lxc_no_scheme"},
        {"Authorization": "Basic lxc_test"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wbk_lexi_key"},
        {"Authorization": "Bearer sk_something_else"},
    ],
)
async def test_missing_or_invalid_key_is_401(sb: Sandbox, client: httpx2.AsyncClient, headers: dict[str, str]) -> None:
    for method, path in [
        ("POST", "/customer/conversations"),
        ("GET", f"/customer/conversations/{uuid.uuid4()}/messages"),
    ]:
        response = await client.request(method, sb.base_url + path, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"error": "Missing or invalid API key"}
        assert REQUEST_ID.fullmatch(response.headers["x-request-id"])


async def test_wrong_key_type_is_403(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    on_customer = await client.post(f"{sb.base_url}/customer/conversations", headers=MANAGEMENT)
    assert on_customer.status_code == 403
    assert on_customer.json() == {"error": "Wrong key type (use lxc_ key)"}
    on_management = await client.post(f"{sb.base_url}/management/conversations", headers=CUSTOMER)
    assert on_management.status_code == 403
    assert on_management.json() == {"error": "Wrong key type (use lxm_ key)"}
    conversation_id = await conversation(client, sb)
    response = await send(client, sb, conversation_id, "hi", "customer")
    assert response.status_code == 200
    wrong = await client.post(
        f"{sb.base_url}/customer/conversations/{conversation_id}/messages", headers=MANAGEMENT, json={"message": "x"}
    )
    assert wrong.status_code == 403


async def test_key_allowlist(client: httpx2.AsyncClient) -> None:
    config = SandboxConfig(delay=0, keys={"lxc_allowed", "lxm_allowed"})
    async with Sandbox(config) as sb:
        denied = await client.post(f"{sb.base_url}/customer/conversations", headers=CUSTOMER)
        assert denied.status_code == 401
        ok = await client.post(f"{sb.base_url}/customer/conversations", headers={"Authorization": "Bearer lxc_allowed"})
        assert ok.status_code == 201
        assert sb.env()["LEXEY_CUSTOMER_KEY"] == "lxc_allowed"
        assert sb.env()["LEXEY_MANAGEMENT_KEY"] == "lxm_allowed"


async def test_unknown_malformed_and_cross_api_conversation_is_404(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    customer_id = await conversation(client, sb, "customer")
    for kind, conversation_id in [
        ("customer", str(uuid.uuid4())),
        ("customer", "not-a-uuid"),
        ("management", customer_id),
    ]:
        posted = await send(client, sb, conversation_id, "hi", kind)
        assert posted.status_code == 404
        assert posted.json() == {"error": "Conversation not found"}
        history = await client.get(
            f"{sb.base_url}/{kind}/conversations/{conversation_id}/messages", headers=HEADERS[kind]
        )
        assert history.status_code == 404


async def test_unknown_route_is_json_404(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    response = await client.get(f"{sb.base_url}/nowhere", headers=CUSTOMER)
    assert response.status_code == 404
    assert response.json() == {"error": "Not found"}
    wrong_kind = await client.post(f"{sb.base_url}/admin/conversations", headers=CUSTOMER)
    assert wrong_kind.status_code == 404
    method = await client.delete(f"{sb.base_url}/customer/conversations", headers=CUSTOMER)
    assert method.status_code == 405
    assert method.json() == {"error": "Method not allowed"}


async def test_bad_message_is_400(client: httpx2.AsyncClient) -> None:
    async with Sandbox(SandboxConfig(delay=0, max_message_chars=10)) as sb:
        conversation_id = await conversation(client, sb)
        url = f"{sb.base_url}/customer/conversations/{conversation_id}/messages"
        cases: list[tuple[bytes, str]] = [
            (b"not json", "Request body must be JSON"),
            (b"", "Request body must be JSON"),
            (b"[1, 2]", "message is required"),
            (b"{}", "message is required"),
            (b'{"message": ""}', "message is required"),
            (b'{"message": "   "}', "message is required"),
            (b'{"message": 42}', "message is required"),
            (b'{"message": "01234567890"}', "Message too long (max 10 characters)"),
        ]
        for content, error in cases:
            response = await client.post(url, headers={**CUSTOMER, "Content-Type": "application/json"}, content=content)
            assert response.status_code == 400, content
            assert response.json() == {"error": error}
        assert (await send(client, sb, conversation_id, "0123456789")).status_code == 200


async def test_message_limit_is_429(client: httpx2.AsyncClient) -> None:
    async with Sandbox(SandboxConfig(delay=0, message_limit=2)) as sb:
        conversation_id = await conversation(client, sb)
        assert (await send(client, sb, conversation_id, "one")).status_code == 200
        assert (await send(client, sb, conversation_id, "two")).status_code == 200
        limited = await send(client, sb, conversation_id, "three")
        assert limited.status_code == 429
        assert limited.json() == {"error": "Conversation message limit reached"}
        fresh = await conversation(client, sb)
        assert (await send(client, sb, fresh, "one")).status_code == 200


async def test_credits_exhausted_is_402(client: httpx2.AsyncClient) -> None:
    async with Sandbox(SandboxConfig(delay=0, credits=2)) as sb:
        customer_id = await conversation(client, sb, "customer")
        management_id = await conversation(client, sb, "management")
        assert (await send(client, sb, customer_id, "one")).status_code == 200
        assert (await send(client, sb, management_id, "Show our configuration", "management")).status_code == 200
        for conversation_id, kind in [(customer_id, "customer"), (management_id, "management")]:
            refused = await send(client, sb, conversation_id, "again", kind)
            assert refused.status_code == 402
            assert refused.json() == {"error": "No active subscription or credits exhausted"}
        history = await client.get(f"{sb.base_url}/customer/conversations/{customer_id}/messages", headers=CUSTOMER)
        assert len(history.json()["messages"]) == 2


async def test_multibyte_reply_is_utf8_on_the_wire(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    management_id = await conversation(client, sb, "management")
    await send(
        client,
        sb,
        management_id,
        "Add a knowledge article about hours: Open 9am–5pm, café closed €0 days.",
        "management",
    )
    customer_id = await conversation(client, sb)
    response = await send(client, sb, customer_id, "What are your opening hours?")
    assert "9am–5pm".encode() in response.content
    assert chat_text(response.text).endswith("Open 9am–5pm, café closed €0 days.")
    assert [e["type"] for e in chat_events(response.text)] == ["delta"] * len(chat_events(response.text))
