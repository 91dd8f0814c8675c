"""POST /webhooks/lexey over loopback: signature, size and shape refusals, redelivery, unknown types."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from lexey_mcp.events.feed import EventFeed, EventOptions
from lexey_mcp.events.model import Event
from lexey_mcp.events.receiver import MAX_BODY_BYTES, WebhookReceiver, serve_listener, sign
from lexey_mcp.listeners import PortUnavailable
from tests.events.conftest import Heard, events_settings
from tests.events.helpers import SECRET, body_of, escalation, post
from tests.processes import assert_unfinished_headers_are_cut_off


def stored(state_dir: Path) -> int:
    with sqlite3.connect(state_dir / "events.sqlite3") as db:
        count: int = db.execute("SELECT count(*) FROM events").fetchone()[0]
        return count


@pytest.fixture
async def http(anyio_backend: str) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as client:
        yield client


async def test_a_signed_escalation_is_kept_and_announced(
    feed: EventFeed, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    heard = Heard()
    feed.bus.subscribe(heard)
    payload = escalation()
    assert feed.webhook_url is not None
    response = await post(http, feed.webhook_url, body_of(payload))
    assert (response.status_code, response.json()) == (200, {"ok": True})
    cid = payload["conversation"]["id"]
    assert heard.uris == ["lexey://escalations", f"lexey://conversations/{cid}/messages"]
    [kept] = await feed.escalations()
    assert (kept.conversation_id, kept.reason, kept.customer_identifier, kept.status) == (
        cid,
        "Refund over $100",
        "ada@example.com",
        "escalated",
    )
    assert kept.escalated_at == payload["timestamp"]
    assert [m.content for m in kept.messages] == [f"message {i}" for i in range(2, 7)]  # the last five
    assert stored(tmp_path) == 1


def _one_byte_changed(body: bytes) -> tuple[bytes, str]:
    changed = body.replace(b"Refund", b"Refunc", 1)
    return changed, sign(SECRET, body)


@pytest.mark.parametrize(
    "case",
    ["wrong secret", "missing", "wrong prefix", "one byte changed", "bare hex", "empty"],
)
async def test_a_bad_signature_is_401_and_nothing_is_kept(
    feed: EventFeed, http: httpx2.AsyncClient, tmp_path: Path, case: str
) -> None:
    heard = Heard()
    feed.bus.subscribe(heard)
    body = body_of(escalation())
    good = sign(SECRET, body)
    signature: str | None = {
        "wrong secret": sign("another-secret", body),
        "missing": None,
        "wrong prefix": "sha1=" + good.removeprefix("sha256="),
        "bare hex": good.removeprefix("sha256="),
        "empty": "",
    }.get(case, good)
    if case == "one byte changed":
        body, signature = _one_byte_changed(body)
    assert feed.webhook_url is not None
    response = await post(http, feed.webhook_url, body, signature=signature, sign_it=False)
    assert response.status_code == 401
    assert response.json()["ok"] is False
    assert heard.uris == []
    assert await feed.escalations() == []


async def test_over_one_mebibyte_is_413_without_reading_it_all(feed: EventFeed, http: httpx2.AsyncClient) -> None:
    assert feed.webhook_url is not None
    head = body_of({"event": "x.padded", "pad": ""})
    exact = body_of({"event": "x.padded", "pad": "a" * (MAX_BODY_BYTES - len(head))})
    assert len(exact) == MAX_BODY_BYTES
    assert (await post(http, feed.webhook_url, exact)).status_code == 200
    big = exact + b" "
    assert (await post(http, feed.webhook_url, big)).status_code == 413

    async def chunks() -> object:  # no Content-Length: the cap applies while reading
        for _ in range(3):
            yield b" " * (MAX_BODY_BYTES // 2 + 1)

    headers = {"x-lexey-signature": sign(SECRET, b"anything")}
    response = await http.post(feed.webhook_url, content=chunks(), headers=headers)  # type: ignore[arg-type]
    assert response.status_code == 413


@pytest.mark.parametrize("body", [b"[1, 2]", b'"escalated"', b"null", b"{not json", b"", b'{"no": "event"}'])
async def test_not_a_json_event_object_is_400(feed: EventFeed, http: httpx2.AsyncClient, body: bytes) -> None:
    assert feed.webhook_url is not None
    response = await post(http, feed.webhook_url, body)
    assert response.status_code == 400
    assert await feed.escalations() == []


async def test_a_redelivery_is_200_and_kept_once(feed: EventFeed, http: httpx2.AsyncClient, tmp_path: Path) -> None:
    heard = Heard()
    feed.bus.subscribe(heard)
    payload = escalation()
    assert feed.webhook_url is not None
    first = await post(http, feed.webhook_url, body_of(payload))
    payload["messages"] = payload["messages"][:2]  # a redelivery is the same event, whatever else differs
    again = await post(http, feed.webhook_url, body_of(payload))
    assert (first.status_code, again.status_code) == (200, 200)
    assert stored(tmp_path) == 1
    assert len(heard.uris) == 2  # announced once
    later = {**payload, "timestamp": "2026-11-30T10:00:00Z"}  # same conversation, a new escalation
    assert (await post(http, feed.webhook_url, body_of(later))).status_code == 200
    assert stored(tmp_path) == 2


async def test_an_unknown_event_type_is_kept_not_announced(
    feed: EventFeed, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    heard = Heard()
    feed.bus.subscribe(heard)
    payload = {**escalation(), "event": "conversation.rated"}
    assert feed.webhook_url is not None
    assert (await post(http, feed.webhook_url, body_of(payload))).status_code == 200
    assert stored(tmp_path) == 1
    assert heard.uris == []
    assert await feed.escalations() == []


async def test_without_a_secret_the_receiver_is_off(
    tmp_path: Path, anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", "lexey_mcp.events")
    async with EventFeed(events_settings(tmp_path, webhook_secret=None), EventOptions(webhook_port=0)) as feed:
        assert feed.webhook_url is None  # no listener at all
    assert "webhook receiver off" in caplog.text
    assert "LEXEY_WEBHOOK_SECRET" in caplog.text


async def test_the_secret_never_reaches_the_logs(
    feed: EventFeed, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    assert feed.webhook_url is not None
    body = body_of(escalation())
    await post(http, feed.webhook_url, body)
    await post(http, feed.webhook_url, body, secret="wrong")
    await post(http, feed.webhook_url, b"[]")
    assert SECRET not in caplog.text
    assert sign(SECRET, body) not in caplog.text


async def test_a_thousand_concurrent_webhooks_none_lost_or_duplicated(
    feed: EventFeed, tmp_path: Path, anyio_backend: str
) -> None:
    heard = Heard()
    feed.bus.subscribe(heard)
    payloads = [escalation(minutes=i) for i in range(1000)]
    bodies = [body_of(p) for p in payloads] + [body_of(p) for p in payloads[::10]]  # 100 redeliveries mixed in
    statuses: list[int] = []
    assert feed.webhook_url is not None
    url = feed.webhook_url
    limits = httpx2.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx2.AsyncClient(trust_env=False, timeout=60, limits=limits) as http, anyio.create_task_group() as tg:

        async def one(body: bytes) -> None:
            statuses.append((await post(http, url, body)).status_code)

        for body in bodies:
            tg.start_soon(one, body)
    assert statuses == [200] * len(bodies)
    assert stored(tmp_path) == 1000
    assert heard.uris.count("lexey://escalations") == 1000
    expected = {f"lexey://conversations/{p['conversation']['id']}/messages" for p in payloads}
    announced = [u for u in heard.uris if u != "lexey://escalations"]
    assert sorted(announced) == sorted(expected)
    newest = await feed.escalations(limit=100)
    assert [e.conversation_id for e in newest] == [p["conversation"]["id"] for p in reversed(payloads[-100:])]


async def test_the_signature_hex_may_be_upper_case(feed: EventFeed, http: httpx2.AsyncClient) -> None:
    body = body_of(escalation())
    assert feed.webhook_url is not None
    response = await post(http, feed.webhook_url, body, signature="sha256=" + sign(SECRET, body)[7:].upper())
    assert response.status_code == 200


async def test_a_body_nested_past_jsons_limit_is_400(feed: EventFeed, http: httpx2.AsyncClient) -> None:
    assert feed.webhook_url is not None
    deep = b'{"event": "conversation.escalated", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = await post(http, feed.webhook_url, deep)
    assert (response.status_code, response.json()["error"]) == (400, "the body is nested too deeply")


async def _raw_post(port: int, declared: int, sent: bytes) -> anyio.abc.SocketStream:
    """A POST whose Content-Length promises `declared` bytes, of which only `sent` arrive (for now)."""
    stream = await anyio.connect_tcp("127.0.0.1", port)
    head = (
        f"POST /webhooks/lexey HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\nX-Lexey-Signature: sha256=00\r\n\r\n"
    )
    await stream.send(head.encode() + sent)
    return stream


async def _status(stream: anyio.abc.SocketStream) -> int:
    received = b""
    while b"\r\n" not in received:
        received += await stream.receive()
    return int(received.split(b" ", 2)[1])


async def test_slow_bodies_time_out_and_cannot_pin_the_receiver(anyio_backend: str) -> None:
    """Anyone can send a body (the signature is checked after it): one trickling in gets 408 at the deadline, and
    while bodies being read hold `max_buffered` bytes, more are refused at once (503, retried by Lexey)."""
    kept: list[str] = []

    async def record(event: Event) -> bool:
        kept.append(event.type)
        return True

    body = body_of(escalation())
    receiver = WebhookReceiver(SECRET, record, body_seconds=1.0, max_buffered=len(body) + 50)
    async with anyio.create_task_group() as tg, httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        url = await tg.start(serve_listener, receiver, "127.0.0.1", 0, 10.0, 1000)
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        slow = await _raw_post(port, 1000, b"{" + b" " * 99)  # holds 100 bytes, and says 900 more are coming
        with anyio.fail_after(5):
            while (await post(http, url, body)).status_code != 503:  # once the slow body's first bytes are in
                pass
            assert await _status(slow) == 408
        assert (await post(http, url, body)).status_code == 200  # what it held is free again
        await slow.aclose()
        tg.cancel_scope.cancel()
    assert set(kept) == {"conversation.escalated"}  # the 200s; the slow body kept nothing


async def test_headers_not_complete_in_time_close_the_listeners_connection(tmp_path: Path, anyio_backend: str) -> None:
    """The --webhook-port listener is reachable by anyone who can reach the port: a connection that never finishes
    its headers is closed at LEXEY_MCP_HEADER_TIMEOUT, as on the HTTP transport, rather than held forever."""
    async with EventFeed(events_settings(tmp_path, header_timeout=0.5), EventOptions(webhook_port=0)) as feed:
        assert feed.webhook_url is not None
        await assert_unfinished_headers_are_cut_off(feed.webhook_url, within=5)


async def test_a_webhook_port_in_use_fails_the_start_with_one_line(tmp_path: Path, anyio_backend: str) -> None:
    """A receiver that cannot have its port is an error naming it (issue 19: the command line says that one line and
    exits 2, tests/test_ports.py), not a server that runs on without receiving anything."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortUnavailable) as raised:
            async with EventFeed(events_settings(tmp_path), EventOptions(webhook_port=port)):
                pass
    assert str(raised.value) == (
        f"the webhook receiver cannot listen on 127.0.0.1 port {port}: another program uses it; stop that program "
        "or choose another port"
    )


async def test_refused_signatures_are_logged_once_a_minute_not_once_each(
    feed: EventFeed, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone who can reach the route can send a bad signature; a flood of them must not flood the log."""
    caplog.set_level("WARNING", "lexey_mcp.events")
    assert feed.webhook_url is not None
    for _ in range(5):
        assert (await post(http, feed.webhook_url, body_of(escalation()), secret="wrong")).status_code == 401
    lines = [r.getMessage() for r in caplog.records if "signature does not match" in r.getMessage()]
    assert lines == ["webhook refused: the signature does not match (check LEXEY_WEBHOOK_SECRET)"]


def _without(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """`payload` with the field at dotted `path` renamed to a guess (the sender's idea of the shape)."""
    *parents, last = path.split(".")
    target = payload
    for name in parents:
        target = target[name]
    target["guessed_" + last] = target.pop(last)
    return payload


@pytest.mark.parametrize("field", ["timestamp", "conversation", "conversation.id", "payload", "payload.reason"])
async def test_an_escalation_off_the_documented_shape_is_400_naming_the_field(
    feed: EventFeed, http: httpx2.AsyncClient, field: str
) -> None:
    # It was kept as "None: no reason given" for a conversation it could not name.
    assert feed.webhook_url is not None
    response = await post(http, feed.webhook_url, body_of(_without(escalation(), field)))
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{field} must be ")
    assert "the documented shape" in response.json()["error"]
    assert await feed.escalations() == []
