"""Lexi over real HTTP: named events, tools, context, idempotency, credits, limits, rate-limit headers, errors."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import anyio
import httpx2
import pytest

from lexey_mcp.sandbox import Sandbox, SandboxConfig
from lexey_mcp.sandbox.store import HISTORY_LIMIT

from .helpers import LEXI, REQUEST_ID, lexi, lexi_events, lexi_text, lexi_url

pytestmark = pytest.mark.anyio


def _next_midnight() -> int:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((today + timedelta(days=1)).timestamp())


def _assert_rate_headers(response: httpx2.Response, limit: int, remaining: int) -> None:
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == str(remaining)
    assert response.headers["x-ratelimit-reset"] == str(_next_midnight())
    assert REQUEST_ID.fullmatch(response.headers["x-request-id"])


async def test_stream_with_tools(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    response = await lexi(client, sb, {"message": "What stage is the BrightPath deal at, and who is James?"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    _assert_rate_headers(response, 1000, 999)
    parsed = lexi_events(response.text)
    names = [name for name, _ in parsed]
    assert names[:5] == ["thinking", "tool_step", "tool_step", "tool_step", "tool_step"]
    assert names[-1] == "done"
    assert set(names[5:-1]) == {"text"}
    assert [p for n, p in parsed if n == "tool_step"] == [
        {"tool": "search_contacts", "status": "started"},
        {"tool": "search_contacts", "status": "completed", "summary": "Found 1 contact"},
        {"tool": "search_deals", "status": "started"},
        {"tool": "search_deals", "status": "completed", "summary": "Found 1 deal"},
    ]
    texts = [p for n, p in parsed if n == "text"]
    conversation_ids = {p["conversation_id"] for p in texts}
    assert len(conversation_ids) == 1
    assert uuid.UUID(conversation_ids.pop()).version == 4
    assert all(set(p) == {"delta", "conversation_id"} and p["delta"].count(" ") <= 1 for p in texts)
    assert lexi_text(response.text) == (
        "James Okafor is CFO at BrightPath Logistics (james.okafor@brightpath.example, +234 1 555 0199). "
        "BrightPath fleet contract: stage proposal, $125,000 (contact: James Okafor)."
    )
    done = parsed[-1][1]
    assert done["credits_remaining"] == 5000 - 3
    assert done["message_id"].startswith("msg_")
    assert "id:" not in response.text


async def test_stream_without_tools(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    first = await lexi(client, sb, {"message": "Who is Maria Rossi?", "allow_tools": True})
    conversation_id = lexi_events(first.text)[-2][1]["conversation_id"]
    response = await lexi(
        client, sb, {"message": "Who is Maria Rossi?", "allow_tools": False, "conversation_id": conversation_id}
    )
    parsed = lexi_events(response.text)
    assert "tool_step" not in [name for name, _ in parsed]
    assert parsed[0] == ("thinking", {"text": "Answering from the conversation only; CRM tools are disabled."})
    assert lexi_text(response.text).startswith("Tools are off for this request, so I'm going on our conversation")
    assert {p["conversation_id"] for n, p in parsed if n == "text"} == {conversation_id}
    assert parsed[-1][1]["credits_remaining"] == 5000 - 2 - 1


async def test_context_ids_drive_lookups(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    response = await lexi(
        client,
        sb,
        {"message": "Summarise this", "context": {"contact_id": "ct_001", "deal_id": "dl_404", "page": "/contacts/1"}},
    )
    steps = [p for n, p in lexi_events(response.text) if n == "tool_step" and p["status"] == "completed"]
    assert steps == [
        {"tool": "get_contact", "status": "completed", "summary": "Loaded contact Maria Rossi"},
        {"tool": "get_deal", "status": "completed", "summary": "No deal dl_404"},
    ]
    assert lexi_text(response.text).startswith("Maria Rossi is Managing Partner at Acme Legal")
    assert "€" not in lexi_text(response.text)
    greeting = await lexi(client, sb, {"message": "hello"})
    assert [n for n, _ in lexi_events(greeting.text)][:2] == ["thinking", "text"]


async def test_unknown_and_malformed_conversation(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    unknown = await lexi(client, sb, {"message": "hi", "conversation_id": str(uuid.uuid4())})
    assert unknown.status_code == 404
    assert unknown.json() == {
        "error": {"code": "conversation_not_found", "message": "Supplied conversation_id does not exist"}
    }
    _assert_rate_headers(unknown, 1000, 999)
    malformed = await lexi(client, sb, {"message": "hi", "conversation_id": "abc"})
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "validation_error"


async def test_idempotent_replay_is_not_charged(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    key = str(uuid.uuid4())
    body = {"message": "List the deals in the pipeline"}
    first = await lexi(client, sb, body, {"Idempotency-Key": key})
    second = await lexi(client, sb, body, {"Idempotency-Key": key})
    assert first.status_code == second.status_code == 200
    assert second.text == first.text
    assert sb.last_headers["lexi"]["idempotency-key"] == key
    assert sb.last_headers["lexi"]["authorization"] == LEXI["Authorization"]
    other = await lexi(client, sb, body)
    assert lexi_events(first.text)[-1][1]["credits_remaining"] == 5000 - 2
    assert lexi_events(other.text)[-1][1]["credits_remaining"] == 5000 - 4
    assert lexi_events(other.text)[-1][1]["message_id"] != lexi_events(first.text)[-1][1]["message_id"]
    reused = await lexi(client, sb, {"message": "something else"}, {"Idempotency-Key": key})
    assert reused.status_code == 400
    assert reused.json()["error"] == {
        "code": "validation_error",
        "message": "Idempotency-Key was already used with a different request",
    }
    bad_key = await lexi(client, sb, body, {"Idempotency-Key": "not-a-uuid"})
    assert bad_key.status_code == 400


async def test_idempotency_expires_after_24_hours(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    key = str(uuid.uuid4())
    first = await lexi(client, sb, {"message": "hello"}, {"Idempotency-Key": key})
    sb.store.idempotency[key].created = time.time() - 24 * 3600 - 1
    again = await lexi(client, sb, {"message": "hello"}, {"Idempotency-Key": key})
    assert lexi_events(again.text)[-1][1]["message_id"] != lexi_events(first.text)[-1][1]["message_id"]


async def test_credits_run_out(client: httpx2.AsyncClient) -> None:
    async with Sandbox(SandboxConfig(delay=0, credits=3)) as sb:
        key = str(uuid.uuid4())
        first = await lexi(client, sb, {"message": "Show the deal pipeline"}, {"Idempotency-Key": key})
        assert lexi_events(first.text)[-1][1]["credits_remaining"] == 1
        refused = await lexi(client, sb, {"message": "Show the deal pipeline"})
        assert refused.status_code == 402
        assert refused.json() == {
            "error": {"code": "insufficient_credits", "message": "Workspace credit balance is exhausted"}
        }
        _assert_rate_headers(refused, 1000, 998)
        replay = await lexi(client, sb, {"message": "Show the deal pipeline"}, {"Idempotency-Key": key})
        assert replay.text == first.text
        cheap = await lexi(client, sb, {"message": "hi"})
        assert lexi_events(cheap.text)[-1][1]["credits_remaining"] == 0
        assert (await lexi(client, sb, {"message": "hi"})).status_code == 402


async def test_message_length_limit(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    assert (await lexi(client, sb, {"message": "x" * 12_000})).status_code == 200
    too_long = await lexi(client, sb, {"message": "x" * 12_001})
    assert too_long.status_code == 400
    assert too_long.json() == {"error": {"code": "validation_error", "message": "message exceeds 12,000 characters"}}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{", "Request body must be JSON"),
        (b'"text"', "Request body must be a JSON object"),
        (b"{}", "message is required"),
        (b'{"message": " "}', "message is required"),
        (b'{"message": "hi", "context": "ct_001"}', "context must be an object of strings"),
        (b'{"message": "hi", "context": {"contact_id": 1}}', "context must be an object of strings"),
        (b'{"message": "hi", "allow_tools": "yes"}', "allow_tools must be a boolean"),
    ],
)
async def test_validation_errors(sb: Sandbox, client: httpx2.AsyncClient, content: bytes, message: str) -> None:
    response = await client.post(lexi_url(sb), headers={**LEXI, "Content-Type": "application/json"}, content=content)
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "validation_error", "message": message}}
    _assert_rate_headers(response, 1000, 999)


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "invalid_key"),
        ({"Authorization": "Bearer lxc_customer"}, 401, "invalid_key"),
        ({"Authorization": "Bearer wbk_noperm_key"}, 403, "insufficient_permissions"),
    ],
)
async def test_auth_errors(
    sb: Sandbox, client: httpx2.AsyncClient, headers: dict[str, str], status: int, code: str
) -> None:
    response = await client.post(lexi_url(sb), headers=headers, json={"message": "hi"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    _assert_rate_headers(response, 1000, 1000)


async def test_key_allowlist(client: httpx2.AsyncClient) -> None:
    async with Sandbox(SandboxConfig(delay=0, keys={"wbk_only"})) as sb:
        assert (await lexi(client, sb, {"message": "hi"})).status_code == 401
        ok = await client.post(lexi_url(sb), headers={"Authorization": "Bearer wbk_only"}, json={"message": "hi"})
        assert ok.status_code == 200
        assert sb.env()["LEXI_API_KEY"] == "wbk_only"


async def test_daily_rate_limit(client: httpx2.AsyncClient) -> None:
    async with Sandbox(SandboxConfig(delay=0, lexi_daily_limit=2)) as sb:
        assert (await lexi(client, sb, {"message": "hi"})).headers["x-ratelimit-remaining"] == "1"
        assert (await lexi(client, sb, {"message": "hi"})).headers["x-ratelimit-remaining"] == "0"
        limited = await lexi(client, sb, {"message": "hi"})
        assert limited.status_code == 429
        assert limited.json() == {"error": {"code": "rate_limited", "message": "Daily rate limit exceeded"}}
        _assert_rate_headers(limited, 2, 0)
        assert 0 < int(limited.headers["retry-after"]) <= 86_400


@pytest.mark.parametrize(
    ("company_id", "expected", "absent"),
    [
        ("co_001", ["Acme Legal annual retainer: stage negotiation"], ["BrightPath fleet", "Northwind expansion"]),
        ("co_003", ["There are no open deals for Northwind Traders."], ["Northwind expansion:", "Acme Legal annual"]),
    ],
)
async def test_open_deals_of_the_company_in_context(
    sb: Sandbox, client: httpx2.AsyncClient, company_id: str, expected: list[str], absent: list[str]
) -> None:
    response = await lexi(client, sb, {"message": "Which deals are open?", "context": {"company_id": company_id}})
    text = lexi_text(response.text)
    for part in expected:
        assert part in text
    for part in absent:
        assert part not in text


async def test_open_deals_across_the_crm_exclude_closed_ones(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    text = lexi_text((await lexi(client, sb, {"message": "Which deals are open?"})).text)
    assert "Acme Legal annual retainer" in text
    assert "BrightPath fleet contract" in text
    assert "closed won" not in text


async def test_the_request_log_and_close_reasons_are_bounded(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    for _ in range(HISTORY_LIMIT + 5):
        sb.store.record_request("GET", "/x", None, None, {})
        scope = anyio.CancelScope()
        sb.store.stream_opened(scope)
        sb.store.stream_closed(scope, "completed")
    assert len(sb.requests_log) == HISTORY_LIMIT
    assert len(sb.store.closed_reasons) == HISTORY_LIMIT
    response = await lexi(client, sb, {"message": "hello"})
    assert response.status_code == 200
    assert sb.requests_log[-1].path.endswith("/lexi/chat/stream")
    assert await sb.wait_for_stream_closed() == "completed"


async def test_a_follow_up_is_about_what_the_conversation_named(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    """A follow-up ("who is their contact?") is about what the conversation named, in that conversation only."""
    first = await lexi(client, sb, {"message": "Tell me about BrightPath"})
    assert lexi_text(first.text) == "BrightPath Logistics: logistics in Lagos, 1 contact, 1 deal."
    conversation_id = lexi_events(first.text)[-2][1]["conversation_id"]
    follow_up = {"message": "Who is their contact?", "conversation_id": conversation_id}
    answered = await lexi(client, sb, follow_up)
    assert lexi_text(answered.text) == (
        "James Okafor is CFO at BrightPath Logistics (james.okafor@brightpath.example, +234 1 555 0199)."
    )
    deals = await lexi(client, sb, {"message": "And what deals do they have?", "conversation_id": conversation_id})
    assert lexi_text(deals.text) == "BrightPath fleet contract: stage proposal, $125,000 (contact: James Okafor)."
    elsewhere = await lexi(client, sb, {"message": "Who is their contact?"})  # a new conversation: no one named
    assert lexi_text(elsewhere.text).count(" is ") == 4  # every contact
