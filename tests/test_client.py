"""`LexeyClient` against scripted upstreams (httpx2.MockTransport): requests, errors, retries, secrecy."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import anyio
import httpx2
import pytest

from lexey_mcp import errors
from lexey_mcp.client import LexeyClient
from lexey_mcp.config import Settings
from lexey_mcp.upstream_http import parse_retry_after
from tests.streams import (
    ALL_KEYS,
    CID,
    CID2,
    CUSTOMER_KEY,
    LEXI_KEY,
    MANAGEMENT_KEY,
    Upstream,
    chat_stream,
    fail,
    lexi_event,
    reply,
    settings,
    sse,
)

pytestmark = pytest.mark.anyio

LEXI_OK = lexi_event("text", {"delta": "hi", "conversation_id": CID2}) + b"data: [DONE]\n\n"


def client(upstream: Upstream, **overrides: object) -> LexeyClient:
    return LexeyClient(settings(**overrides), transport=upstream.transport())


async def test_customer_send_message_request_shape() -> None:
    upstream = Upstream(sse(chat_stream("Hello")))
    async with client(upstream) as c:
        result = await c.customer.send_message(CID, "What are your hours?")
    request = upstream.requests[0]
    assert request.method == "POST"
    assert str(request.url) == f"https://lexey.test/api/v1/customer/conversations/{CID}/messages"
    assert request.headers["authorization"] == f"Bearer {CUSTOMER_KEY}"
    assert request.headers["accept"] == "text/event-stream"
    assert json.loads(request.content) == {"message": "What are your hours?"}
    assert (result.text, result.request_id) == ("Hello", "req_test")


async def test_management_uses_its_own_key_and_root() -> None:
    upstream = Upstream(sse(chat_stream("Done")), reply(201, {"conversationId": CID2}))
    async with client(upstream) as c:
        await c.management.send_message(CID, "Set our business context: pets.")
        assert await c.management.create_conversation() == CID2
    assert all(r.headers["authorization"] == f"Bearer {MANAGEMENT_KEY}" for r in upstream.requests)
    assert upstream.requests[1].url.path == "/api/v1/management/conversations"


async def test_get_messages_passes_the_list_through() -> None:
    messages = [
        {"role": "user", "content": "hi", "createdAt": "2026-11-23T10:00:00Z", "id": "m1"},
        {"role": "assistant", "content": "hello", "createdAt": "2026-11-23T10:00:01Z"},
    ]
    upstream = Upstream(reply(200, {"messages": messages}))
    async with client(upstream) as c:
        got = await c.customer.get_messages(CID)
    assert [m.model_dump() for m in got] == messages
    assert upstream.requests[0].method == "GET"


async def test_lexi_request_shape() -> None:
    upstream = Upstream(
        sse(
            LEXI_OK,
            headers={"x-ratelimit-limit": "100", "x-ratelimit-remaining": "99", "x-ratelimit-reset": "1795478400"},
        )
    )
    async with client(upstream) as c:
        result = await c.lexi_chat("Who is Jane?", context={"contact_id": "c_1", "page": "contacts"}, allow_tools=False)
    request = upstream.requests[0]
    assert str(request.url) == "https://lexi.test/functions/v1/api-gateway/v1/lexi/chat/stream"
    assert request.headers["authorization"] == f"Bearer {LEXI_KEY}"
    assert request.headers["accept"] == "text/event-stream"
    assert json.loads(request.content) == {
        "message": "Who is Jane?",
        "allow_tools": False,
        "context": {"contact_id": "c_1", "page": "contacts"},
    }
    key = request.headers["idempotency-key"]
    assert result.idempotency_key == key
    assert len(key) == 36
    assert result.rate_limit is not None
    assert result.rate_limit.model_dump() == {"limit": 100, "remaining": 99, "reset": 1795478400}
    assert (result.text, result.conversation_id) == ("hi", CID2)


async def test_lexi_keeps_the_callers_idempotency_key_and_conversation() -> None:
    upstream = Upstream(sse(LEXI_OK))
    async with client(upstream) as c:
        result = await c.lexi_chat("again", conversation_id=CID, idempotency_key=CID2)
    assert upstream.requests[0].headers["idempotency-key"] == CID2
    assert json.loads(upstream.requests[0].content)["conversation_id"] == CID
    assert result.conversation_id == CID


BAD_IDS = [
    "../x",
    "%2e%2e",
    "a/b",
    "x?y=1",
    "x#y",
    "x\x00",
    f"{CID}\n",
    f"{CID}/../{CID}",
    "∕" * 36,
    "http://evil.test/",
    "",
    f"{{{CID}}}",
    CID.replace("-", ""),
    f"urn:uuid:{CID}",
]


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_bad_conversation_ids_are_refused_before_any_request(bad_id: str) -> None:
    upstream = Upstream()
    async with client(upstream) as c:
        for call in (
            c.customer.send_message(bad_id, "hi"),
            c.customer.get_messages(bad_id),
            c.management.send_message(bad_id, "hi"),
            c.lexi_chat("hi", conversation_id=bad_id),
        ):
            with pytest.raises(errors.LexeyInputError, match="UUID"):
                await call
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        ("x" * 12_001, "12,000"),
        ("a\ud800b", "surrogate"),
        ("a\x00b", "control"),
        ("bell\x07", "control"),
        ("c1\x85", "control"),
    ],
)
async def test_bad_lexi_messages_are_refused_before_any_request(message: str, match: str) -> None:
    upstream = Upstream()
    async with client(upstream) as c:
        with pytest.raises(errors.LexeyInputError, match=match):
            await c.lexi_chat(message)
    assert upstream.requests == []


async def test_lexi_message_of_exactly_the_limit_is_sent() -> None:
    upstream = Upstream(sse(LEXI_OK))
    async with client(upstream) as c:
        await c.lexi_chat("x" * 12_000)
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("context", [{"owner_id": "x"}, {"contact_id": 5}, {"page": ""}, {"page": "x" * 501}])
async def test_bad_lexi_context_is_refused(context: dict[str, object]) -> None:
    async with client(Upstream()) as c:
        with pytest.raises(errors.LexeyInputError, match="context"):
            await c.lexi_chat("hi", context=context)


async def test_bad_idempotency_key_is_refused() -> None:
    async with client(Upstream()) as c:
        with pytest.raises(errors.LexeyInputError, match="idempotency_key"):
            await c.lexi_chat("hi", idempotency_key="not-a-uuid")


async def test_missing_and_wrong_keys_are_refused_before_any_request() -> None:
    upstream = Upstream()
    async with client(upstream, customer_key=None, management_key=CUSTOMER_KEY) as c:
        with pytest.raises(errors.LexeyConfigError, match="LEXEY_CUSTOMER_KEY is not set"):
            await c.customer.send_message(CID, "hi")
        with pytest.raises(errors.LexeyConfigError, match=r"LEXEY_MANAGEMENT_KEY must be .* lxm_") as info:
            await c.management.create_conversation()
    assert CUSTOMER_KEY not in str(info.value)
    assert upstream.requests == []


CHAT_STATUSES = [
    (400, errors.BadRequestError, "too long"),
    (401, errors.AuthenticationError, "LEXEY_CUSTOMER_KEY"),
    (402, errors.PaymentRequiredError, "billing"),
    (403, errors.PermissionDeniedError, "lxc_ key"),
    (404, errors.NotFoundError, "omit it"),
    (429, errors.RateLimitError, "new conversation"),
    (500, errors.ServerError, "try again"),
]


@pytest.mark.parametrize(("status", "cls", "hint"), CHAT_STATUSES)
async def test_chat_error_statuses(status: int, cls: type[errors.LexeyAPIError], hint: str) -> None:
    upstream = Upstream(reply(status, {"error": f"Upstream says {status}"}))
    async with client(upstream) as c:
        with pytest.raises(cls) as info:
            await c.customer.send_message(CID, "hi")
    error = info.value
    assert (error.status, error.message, error.code, error.request_id) == (
        status,
        f"Upstream says {status}",
        None,
        "req_err",
    )
    assert f"HTTP {status}" in str(error)
    assert hint in str(error)
    assert len(upstream.requests) == 1  # a chat message is never re-sent after an answer


LEXI_STATUSES = [
    (400, "validation_error", errors.BadRequestError),
    (401, "invalid_key", errors.AuthenticationError),
    (402, "insufficient_credits", errors.PaymentRequiredError),
    (403, "insufficient_permissions", errors.PermissionDeniedError),
    (404, "conversation_not_found", errors.NotFoundError),
    (429, "rate_limited", errors.RateLimitError),
]


@pytest.mark.parametrize(("status", "code", "cls"), LEXI_STATUSES)
@pytest.mark.parametrize("nested", [True, False])
async def test_lexi_error_statuses_in_both_shapes(
    status: int, code: str, cls: type[errors.LexeyAPIError], nested: bool
) -> None:
    inner = {"code": code, "message": f"{code} happened"}
    body = {"error": inner} if nested else inner
    headers = {"retry-after": "3600"} if status == 429 else {}
    upstream = Upstream(reply(status, body, headers=headers))
    async with client(upstream) as c:
        with pytest.raises(cls) as info:
            await c.lexi_chat("hi")
    assert (info.value.code, info.value.message, info.value.api) == (code, f"{code} happened", "lexi")
    assert len(upstream.requests) == 1


async def test_html_error_page_is_never_echoed() -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1><script>evil()</script></body></html>"
    upstream = Upstream(reply(502, page, content_type="text/html"))
    async with client(upstream) as c:
        with pytest.raises(errors.ServerError) as info:
            await c.customer.send_message(CID, "hi")
    assert "<html" not in str(info.value)
    assert "evil" not in str(info.value)
    assert "text/html" in str(info.value)


async def test_error_body_echoing_the_key_is_redacted() -> None:
    upstream = Upstream(reply(401, {"error": f"Key {CUSTOMER_KEY} is invalid; Bearer {CUSTOMER_KEY}"}))
    async with client(upstream) as c:
        with pytest.raises(errors.AuthenticationError) as info:
            await c.customer.send_message(CID, "hi")
    rendered = str(info.value) + repr(info.value) + "".join(traceback.format_exception(info.value))
    assert not any(key[4:12] in rendered for key in ALL_KEYS)


async def test_lexi_retries_429_with_the_same_idempotency_key() -> None:
    limited = {"error": {"code": "rate_limited", "message": "slow"}}
    upstream = Upstream(
        reply(429, limited, headers={"retry-after": "0"}), reply(503, b"", content_type="text/plain"), sse(LEXI_OK)
    )
    async with client(upstream) as c:
        result = await c.lexi_chat("hi")
    keys = {r.headers["idempotency-key"] for r in upstream.requests}
    assert len(upstream.requests) == 3
    assert keys == {result.idempotency_key}
    assert result.outcome == "complete"


async def test_lexi_gives_up_after_max_retries() -> None:
    upstream = Upstream(*[reply(500, {"error": "boom"}, headers={"retry-after": "0"})] * 3)
    async with client(upstream, max_retries=2) as c:
        with pytest.raises(errors.ServerError):
            await c.lexi_chat("hi")
    assert len(upstream.requests) == 3


async def test_lexi_does_not_wait_for_a_retry_after_beyond_the_cap() -> None:
    upstream = Upstream(reply(429, {"code": "rate_limited", "message": "slow"}, headers={"retry-after": "86400"}))
    started = time.monotonic()
    async with client(upstream) as c:
        with pytest.raises(errors.RateLimitError) as info:
            await c.lexi_chat("hi")
    assert time.monotonic() - started < 1
    assert info.value.retry_after == 86400
    assert len(upstream.requests) == 1


async def test_lexi_does_not_sleep_until_a_daily_reset() -> None:
    reset = str(int(time.time()) + 6 * 3600)
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset, "x-ratelimit-limit": "100"}
    upstream = Upstream(reply(429, {"code": "rate_limited", "message": "daily limit"}, headers=headers))
    async with client(upstream) as c:
        with pytest.raises(errors.RateLimitError) as info:
            await c.lexi_chat("hi")
    assert len(upstream.requests) == 1
    assert reset in str(info.value)


def test_parse_retry_after() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now.timestamp()) == 30
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now.timestamp()) == 0
    for bad in (None, "", "-1", "soon", "nan", "inf"):
        assert parse_retry_after(bad) is None


async def test_chat_message_retried_only_when_the_request_was_never_sent() -> None:
    upstream = Upstream(fail(httpx2.ConnectError("refused")), sse(chat_stream("ok")))
    async with client(upstream) as c:
        assert (await c.customer.send_message(CID, "hi")).text == "ok"
    assert len(upstream.requests) == 2


async def test_chat_message_not_retried_after_a_failure_once_sent() -> None:
    upstream = Upstream(fail(httpx2.RemoteProtocolError("server disconnected")))
    async with client(upstream) as c:
        with pytest.raises(errors.LexeyConnectionError):
            await c.customer.send_message(CID, "hi")
    assert len(upstream.requests) == 1


async def test_chat_5xx_not_retried_but_history_read_is() -> None:
    upstream = Upstream(reply(503, {"error": "busy"}), reply(503, {"error": "busy"}), reply(200, {"messages": []}))
    async with client(upstream) as c:
        with pytest.raises(errors.ServerError):
            await c.customer.send_message(CID, "hi")
        assert await c.customer.get_messages(CID) == []
    assert len(upstream.requests) == 3


async def test_connection_refused_everywhere_is_a_connection_error() -> None:
    upstream = Upstream(*[fail(httpx2.ConnectError("refused"))] * 4)
    async with client(upstream, max_retries=3, max_retry_wait=0.01) as c:  # the waits are not the point here
        with pytest.raises(errors.LexeyConnectionError, match=r"Could not connect .* \(from LEXEY_BASE_URL\)"):
            await c.customer.create_conversation()
    assert len(upstream.requests) == 4


async def test_connection_refused_names_the_variable_holding_that_url() -> None:
    upstream = Upstream(*[fail(httpx2.ConnectError("refused"))] * 4)
    async with client(upstream, max_retries=0) as c:
        with pytest.raises(errors.LexeyConnectionError, match=r"\(from LEXI_BASE_URL\)"):
            await c.lexi_chat("hi")
        with pytest.raises(errors.LexeyConnectionError, match=r"\(from LEXEY_BASE_URL\)"):
            await c.management.send_message(CID, "hi")


@pytest.mark.parametrize("location", ["http://[::1", "https://exa mple.test/\x00", "http://host:port/"])
async def test_an_unparsable_redirect_location_is_a_readable_protocol_error(location: str) -> None:
    upstream = Upstream(reply(302, b"", headers={"location": location}))
    async with client(upstream) as c:
        with pytest.raises(errors.LexeyProtocolError, match="answered a redirect"):
            await c.customer.send_message(CID, "hi")


async def test_a_non_ascii_key_is_a_config_error_before_anything_is_sent() -> None:
    upstream = Upstream()
    async with client(upstream, customer_key="lxc_schlüssel") as c:
        with pytest.raises(errors.LexeyConfigError, match="LEXEY_CUSTOMER_KEY contains non-ASCII characters"):
            await c.customer.send_message(CID, "hi")
    assert upstream.requests == []


async def test_an_echoed_request_id_is_capped() -> None:
    huge = {"x-request-id": "r" * 50_000}
    upstream = Upstream(sse(chat_stream("hi"), headers=huge), reply(500, {"error": "x"}, headers=huge))
    async with client(upstream, max_retries=0) as c:
        result = await c.customer.send_message(CID, "hi")
        assert result.request_id == "r" * 200
        with pytest.raises(errors.ServerError) as caught:
            await c.customer.send_message(CID, "hi")
    assert caught.value.request_id == "r" * 200


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirects_are_never_followed(status: int) -> None:
    upstream = Upstream(reply(status, b"", headers={"location": "https://evil.test/steal"}))
    async with client(upstream) as c:
        with pytest.raises(errors.LexeyProtocolError, match=r"evil\.test"):
            await c.customer.send_message(CID, "hi")
    assert [r.url.host for r in upstream.requests] == ["lexey.test"]


async def test_a_set_cookie_is_never_sent_back() -> None:
    """One HTTP client serves every caller (hosted mode: each with their own keys), so a cookie set on one reply,
    by Lexey, a CDN or a load balancer, must not go out on the next request: another caller's, perhaps."""
    upstream = Upstream(
        sse(chat_stream("Hello"), headers={"set-cookie": "lb=alice-node; Path=/"}),
        reply(201, {"conversationId": CID2}, headers={"set-cookie": "sid=alice; Domain=lexey.test; Path=/; Secure"}),
        sse(chat_stream("Hello again")),
        reply(200, {"messages": []}),
    )
    async with client(upstream) as c:
        await c.customer.send_message(CID, "I am Alice")
        await c.management.create_conversation()
        await c.customer.send_message(CID2, "I am Bob")
        await c.customer.get_messages(CID2)
    assert len(upstream.requests) == 4
    assert [r.headers.get("cookie") for r in upstream.requests] == [None] * 4


async def test_ok_status_that_is_not_an_event_stream() -> None:
    upstream = Upstream(reply(200, {"answer": "hi"}))
    async with client(upstream) as c:
        with pytest.raises(errors.LexeyProtocolError, match="application/json instead of an event stream"):
            await c.customer.send_message(CID, "hi")


async def test_empty_event_stream_is_partial() -> None:
    upstream = Upstream(sse(b""))
    async with client(upstream) as c:
        result = await c.customer.send_message(CID, "hi")
    assert (result.outcome, result.partial_reason, result.text, result.events_received) == (
        "partial",
        "ended_without_done",
        "",
        0,
    )


async def test_dropped_stream_through_the_client_is_partial() -> None:
    upstream = Upstream(sse(chat_stream("Part", done=False), error=httpx2.ReadError("reset by peer")))
    async with client(upstream) as c:
        result = await c.customer.send_message(CID, "hi")
    assert (result.outcome, result.partial_reason, result.text) == ("partial", "connection_lost", "Part")


async def test_overall_deadline_ends_a_slow_drip() -> None:
    async def respond(request: httpx2.Request) -> httpx2.Response:
        async def drip() -> AsyncIterator[bytes]:
            yield b'id: 1\ndata: {"type":"delta","text":"drip"}\n\n'
            while True:
                await anyio.sleep(0.05)  # a slow upstream is what this tests
                yield b": still here\n"

        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=drip())

    async with LexeyClient(settings(stream_timeout=0.5), transport=httpx2.MockTransport(respond)) as c:
        started = time.monotonic()
        with anyio.fail_after(5):  # a broken deadline fails here instead of hanging the suite
            result = await c.customer.send_message(CID, "hi")
    assert 0.4 < time.monotonic() - started < 2
    assert (result.outcome, result.partial_reason, result.text) == ("partial", "timeout", "drip")


async def test_no_key_in_any_repr() -> None:
    s = settings(auth_token="tok_SuperSecretToken123")
    rendered = repr(s) + str(s) + repr(LexeyClient(s)) + s.model_dump_json()
    assert not any(key[4:12] in rendered for key in ALL_KEYS)
    assert "SuperSecret" not in rendered


def test_settings_instance_is_usable_without_env_file() -> None:
    assert isinstance(settings(), Settings)


async def test_overall_deadline_on_a_json_answer_is_a_lexey_timeout() -> None:
    async def respond(request: httpx2.Request) -> httpx2.Response:
        async def stalled() -> AsyncIterator[bytes]:
            yield b'{"messages": ['
            await anyio.sleep(30)  # an upstream that stalls is what this tests

        return httpx2.Response(200, headers={"content-type": "application/json"}, content=stalled())

    async with LexeyClient(settings(stream_timeout=0.3), transport=httpx2.MockTransport(respond)) as c:
        with anyio.fail_after(5), pytest.raises(errors.LexeyTimeoutError, match=r"within 0\.3 s"):
            await c.customer.get_messages(CID)
