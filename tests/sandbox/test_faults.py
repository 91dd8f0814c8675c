"""Every fault, observed on the wire over real HTTP."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import httpx2
import pytest
from pydantic import ValidationError

from lexey_mcp.sandbox import Fault, Sandbox, SandboxConfig
from lexey_mcp.sandbox.store import Article

from .helpers import CUSTOMER, LEXI, MANAGEMENT, chat_events, conversation, lexi, lexi_events, lexi_url, send

pytestmark = pytest.mark.anyio
QUESTION = "What are your opening hours?"
ANSWER = "Here's what I can tell you about hours: Open 9am–5pm, café ☕ closed."


async def _stocked(sb: Sandbox, client: httpx2.AsyncClient) -> tuple[str, bytes]:
    """A customer conversation whose reply has multibyte text, and the unfaulted body of that reply."""
    sb.store.org.articles["hours"] = Article("hours", "Open 9am–5pm, café ☕ closed.")
    conversation_id = await conversation(client, sb)
    baseline = await send(client, sb, conversation_id, QUESTION)
    assert "".join(e["text"] for e in chat_events(baseline.text)) == ANSWER
    return conversation_id, baseline.content


async def _chunks(
    client: httpx2.AsyncClient, url: str, headers: dict[str, str], body: dict[str, Any]
) -> tuple[httpx2.Response, list[bytes], httpx2.TransportError | None]:
    chunks: list[bytes] = []
    error: httpx2.TransportError | None = None
    async with client.stream("POST", url, headers=headers, json=body) as response:
        try:
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
        except httpx2.TransportError as exc:
            error = exc
    return response, chunks, error


async def _faulted(
    sb: Sandbox, client: httpx2.AsyncClient, conversation_id: str, fault: Fault
) -> tuple[httpx2.Response, list[bytes], httpx2.TransportError | None]:
    sb.inject(fault)
    url = f"{sb.base_url}/customer/conversations/{conversation_id}/messages"
    return await _chunks(client, url, CUSTOMER, {"message": QUESTION})


def _frames(body: bytes) -> list[bytes]:
    return [frame + b"\n\n" for frame in body.split(b"\n\n")[:-1]]


async def _sse_events(body: bytes) -> list[httpx2.ServerSentEvent]:
    """Parse a body with httpx2's own SSE parser (WHATWG rules)."""
    response = httpx2.Response(
        200,
        headers={"content-type": "text/event-stream"},
        content=body,
        request=httpx2.Request("POST", "http://sandbox.invalid/"),
    )
    return [e async for e in httpx2.EventSource(response)]


async def _sse(body: bytes) -> list[tuple[str, str, str]]:
    return [(e.event, e.data, e.id) for e in await _sse_events(body)]


async def test_chunking_event_is_one_write_per_event(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, baseline = await _stocked(sb, client)
    response, chunks, error = await _faulted(sb, client, conversation_id, Fault(chunking="event"))
    assert error is None
    assert response.status_code == 200
    assert chunks == _frames(baseline)


async def test_chunking_split_cuts_inside_multibyte_characters(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, baseline = await _stocked(sb, client)
    _, chunks, error = await _faulted(sb, client, conversation_id, Fault(target="customer", chunking="split"))
    assert error is None
    assert b"".join(chunks) == baseline
    frames = _frames(baseline)
    assert len(chunks) == 2 * len(frames)
    assert [chunks[i] + chunks[i + 1] for i in range(0, len(chunks), 2)] == frames
    for index, frame in enumerate(frames):
        if len(frame) != len(frame.decode()):  # this event has a multibyte character: the cut must fall inside one
            with pytest.raises(UnicodeDecodeError):
                chunks[2 * index].decode()
    assert await _sse(b"".join(chunks)) == await _sse(baseline)


async def test_chunking_byte_sends_one_byte_per_write(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, baseline = await _stocked(sb, client)
    _, chunks, _ = await _faulted(sb, client, conversation_id, Fault(chunking="byte"))
    assert {len(c) for c in chunks} == {1}
    assert b"".join(chunks) == baseline


@pytest.mark.parametrize(("line_ending", "eol"), [("crlf", b"\r\n"), ("cr", b"\r"), ("lf", b"\n")])
async def test_line_endings(sb: Sandbox, client: httpx2.AsyncClient, line_ending: str, eol: bytes) -> None:
    conversation_id, baseline = await _stocked(sb, client)
    _, chunks, _ = await _faulted(sb, client, conversation_id, Fault.model_validate({"line_ending": line_ending}))
    body = b"".join(chunks)
    assert body == baseline.replace(b"\n", eol)
    assert await _sse(body) == await _sse(baseline)


async def test_comments_and_blank_lines(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, baseline = await _stocked(sb, client)
    _, chunks, _ = await _faulted(sb, client, conversation_id, Fault(comments=True))
    body = b"".join(chunks)
    expected = b"".join(
        b": keep-alive\n" + frame.replace(b"\ndata: ", b"\n: keep-alive\ndata: ") + b"\n" for frame in _frames(baseline)
    )
    assert body == expected
    assert body.startswith(b': keep-alive\nid: 1\n: keep-alive\ndata: {"type":"delta","text":"Here\'s "}\n\n\n')
    assert await _sse(body) == await _sse(baseline)


async def test_bom(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, baseline = await _stocked(sb, client)
    _, chunks, _ = await _faulted(sb, client, conversation_id, Fault(bom=True))
    assert b"".join(chunks) == b"\xef\xbb\xbf" + baseline
    assert chunks[0].startswith(b"\xef\xbb\xbfid: 1\n")


async def test_id_gaps(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, baseline = await _stocked(sb, client)
    _, chunks, _ = await _faulted(sb, client, conversation_id, Fault(id_gaps=True))
    ids = [e.id for e in await _sse_events(b"".join(chunks))]
    count = len(_frames(baseline))
    assert ids[:5] == ["1", "2", "4", "5", "7"]
    assert len(ids) == count
    assert ids == [str(i + 1 + i // 2) for i in range(count)]
    sb.inject(Fault(target="lexi", id_gaps=True))
    lexi_ids = [e.id for e in await _sse_events((await lexi(client, sb, {"message": "hello"})).content)]
    assert lexi_ids[:4] == ["1", "2", "4", "5"]


async def test_malformed_json_at(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, baseline = await _stocked(sb, client)
    _, chunks, _ = await _faulted(sb, client, conversation_id, Fault(malformed_json_at=2))
    parsed = await _sse_events(b"".join(chunks))
    assert parsed[1].id == "2"
    with pytest.raises(json.JSONDecodeError):
        json.loads(parsed[1].data)
    assert parsed[1].data == '{"type":"delta"'
    assert [e.data for i, e in enumerate(parsed) if i != 1] == [
        e.data for i, e in enumerate(await _sse_events(baseline)) if i != 1
    ]


async def test_error_at_chat(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, baseline = await _stocked(sb, client)
    _, chunks, error = await _faulted(sb, client, conversation_id, Fault(error_at=2))
    assert error is None
    frames = _frames(baseline)
    message = "The assistant hit an internal error while generating this response"
    error_frame = f'id: 3\ndata: {{"type":"error","message":"{message}"}}\n\n'.encode()
    assert chunks == [*frames[:2], error_frame, b"id: 4\ndata: [DONE]\n\n"]


async def test_error_at_lexi(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    sb.inject(Fault(target="lexi", error_at=1))
    response = await lexi(client, sb, {"message": "Who is Maria?"})
    assert response.status_code == 200
    assert response.text.endswith(
        'event: error\ndata: {"code":"internal_error","message":"Lexi hit an internal error while generating this '
        'response"}\n\ndata: [DONE]\n\n'
    )
    assert [name for name, _ in lexi_events(response.text)] == ["thinking", "error"]


async def test_drop_after_aborts_the_connection(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, baseline = await _stocked(sb, client)
    response, chunks, error = await _faulted(sb, client, conversation_id, Fault(drop_after=3))
    assert response.status_code == 200
    assert isinstance(error, httpx2.RemoteProtocolError)
    assert "incomplete chunked read" in str(error)
    assert chunks == _frames(baseline)[:3]
    assert await sb.wait_for_stream_closed(1.0) == "dropped"
    assert sb.stats.streams_completed == 2
    assert sb.stats.open_streams == 0


async def test_drop_after_zero_sends_only_headers(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, _ = await _stocked(sb, client)
    response, chunks, error = await _faulted(sb, client, conversation_id, Fault(drop_after=0))
    assert response.status_code == 200
    assert chunks == []
    assert error is not None


async def test_end_without_done(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, baseline = await _stocked(sb, client)
    _, chunks, error = await _faulted(sb, client, conversation_id, Fault(end_without_done=True))
    assert error is None
    assert chunks == _frames(baseline)[:-1]
    assert b"[DONE]" not in b"".join(chunks)
    assert await sb.wait_for_stream_closed(1.0) == "completed"


async def test_stall_after_then_resume(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, baseline = await _stocked(sb, client)
    sb.inject(Fault(stall_after=2, stall_seconds=0.3))
    arrivals: list[float] = []
    chunks: list[bytes] = []
    async with client.stream(
        "POST",
        f"{sb.base_url}/customer/conversations/{conversation_id}/messages",
        headers=CUSTOMER,
        json={"message": QUESTION},
    ) as response:
        async for chunk in response.aiter_raw():
            arrivals.append(time.monotonic())
            chunks.append(chunk)
    assert b"".join(chunks) == baseline
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert gaps[1] >= 0.28
    assert max(gaps[:1] + gaps[2:]) < 0.2


async def test_stall_trips_client_read_timeout(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, _ = await _stocked(sb, client)
    sb.inject(Fault(stall_after=0))
    url = f"{sb.base_url}/customer/conversations/{conversation_id}/messages"
    async with client.stream(
        "POST", url, headers=CUSTOMER, json={"message": QUESTION}, timeout=httpx2.Timeout(5.0, read=0.2)
    ) as response:
        assert response.status_code == 200
        with pytest.raises(httpx2.ReadTimeout):
            await response.aread()
    assert await sb.wait_for_stream_closed(0.5) == "disconnected"


async def test_drip_seconds(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, baseline = await _stocked(sb, client)
    started = time.monotonic()
    _, chunks, _ = await _faulted(sb, client, conversation_id, Fault(drip_seconds=0.01))
    elapsed = time.monotonic() - started
    assert b"".join(chunks) == baseline
    assert elapsed >= 0.01 * (len(chunks) - 1)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "Invalid request"),
        (401, "Missing or invalid API key"),
        (402, "No active subscription or credits exhausted"),
        (403, "Wrong key type (use lxc_ key)"),
        (404, "Conversation not found"),
        (429, "Conversation message limit reached"),
        (500, "Internal server error"),
        (502, "Bad gateway"),
        (503, "Service temporarily unavailable"),
    ],
)
async def test_status_faults_chat(sb: Sandbox, client: httpx2.AsyncClient, status: int, message: str) -> None:
    conversation_id = await conversation(client, sb)
    sb.inject(Fault(target="customer", status=status))
    response = await send(client, sb, conversation_id, "hi")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": message}
    assert "retry-after" not in response.headers
    history = await client.get(f"{sb.base_url}/customer/conversations/{conversation_id}/messages", headers=CUSTOMER)
    assert history.json() == {"messages": []}


async def test_status_fault_management_403(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id = await conversation(client, sb, "management")
    sb.inject(Fault(target="management", status=403))
    response = await send(client, sb, conversation_id, "hi", "management")
    assert response.json() == {"error": "Wrong key type (use lxm_ key)"}


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "validation_error"),
        (401, "invalid_key"),
        (402, "insufficient_credits"),
        (403, "insufficient_permissions"),
        (404, "conversation_not_found"),
        (429, "rate_limited"),
        (500, "internal_error"),
        (502, "bad_gateway"),
        (503, "service_unavailable"),
    ],
)
async def test_status_faults_lexi(sb: Sandbox, client: httpx2.AsyncClient, status: int, code: str) -> None:
    sb.inject(Fault(target="lexi", status=status))
    response = await lexi(client, sb, {"message": "hi"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert set(response.json()["error"]) == {"code", "message"}
    assert response.headers["x-ratelimit-remaining"] == ("0" if status == 429 else "1000")
    assert "x-ratelimit-reset" in response.headers
    assert "x-request-id" in response.headers


async def test_html_error(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id = await conversation(client, sb)
    sb.inject(Fault(status=502, html_error=True))
    response = await send(client, sb, conversation_id, "hi")
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text.startswith("<html>\r\n<head><title>502 Bad Gateway</title></head>")


async def test_lexi_429_then_success_on_retry(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    sb.inject(Fault(target="lexi", status=429, retry_after="0", times=1))
    limited = await lexi(client, sb, {"message": "hi"}, {"Idempotency-Key": "0b7f2c1e-3d4a-4b5c-8d6e-7f8091a2b3c4"})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "0"
    retried = await lexi(client, sb, {"message": "hi"}, {"Idempotency-Key": "0b7f2c1e-3d4a-4b5c-8d6e-7f8091a2b3c4"})
    assert retried.status_code == 200
    assert lexi_events(retried.text)[-1][1]["credits_remaining"] == 4999


async def test_retry_after_http_date(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id = await conversation(client, sb)
    sb.inject(Fault(status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"))
    response = await send(client, sb, conversation_id, "hi")
    assert (response.status_code, response.headers["retry-after"]) == (503, "Wed, 21 Oct 2015 07:28:00 GMT")


async def test_raw_chunks(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    hostile = ['data: {"type":"delta","text":"caf\xc3', '\xa9"}\r\n\r', "\n", "\xff\xfe\x00 garbage"]
    sb.inject(Fault(target="lexi", raw_chunks=[*hostile, b"\xe2\x82"]))
    response, chunks, error = await _chunks(client, lexi_url(sb), LEXI, {"message": "ignored"})
    assert error is None
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert chunks == [h.encode("latin-1") for h in hostile] + [b"\xe2\x82"]
    assert "x-ratelimit-limit" in response.headers


async def test_raw_chunks_then_drop(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id = await conversation(client, sb)
    sb.inject(Fault(raw_chunks=["data: one\n\n", "data: two\n\n"], drop_after=1))
    url = f"{sb.base_url}/customer/conversations/{conversation_id}/messages"
    _, chunks, error = await _chunks(client, url, CUSTOMER, {"message": "hi"})
    assert chunks == [b"data: one\n\n"]
    assert isinstance(error, httpx2.RemoteProtocolError)


async def test_content_type_override(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id, baseline = await _stocked(sb, client)
    response, chunks, _ = await _faulted(sb, client, conversation_id, Fault(content_type="application/json"))
    assert response.headers["content-type"] == "application/json"
    assert b"".join(chunks) == baseline
    sb.inject(Fault(status=500, content_type="text/plain"))
    plain = await send(client, sb, conversation_id, "hi")
    assert plain.headers["content-type"] == "text/plain"
    assert plain.json() == {"error": "Internal server error"}


async def test_targets_times_and_fifo(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    customer_id = await conversation(client, sb)
    management_id = await conversation(client, sb, "management")
    sb.inject(Fault(target="lexi", status=500, times=2))
    sb.inject(Fault(target="any", status=502))
    sb.inject(Fault(target="customer", status=503))
    assert (await send(client, sb, customer_id, "hi")).status_code == 502  # the lexi fault is skipped, not consumed
    assert (await send(client, sb, management_id, "hi", "management")).status_code == 200
    assert (await send(client, sb, customer_id, "hi")).status_code == 503
    assert [(await lexi(client, sb, {"message": "hi"})).status_code for _ in range(3)] == [500, 500, 200]
    assert (await send(client, sb, customer_id, "hi")).status_code == 200
    assert sb.stats.faults_applied == 4
    created = await client.post(f"{sb.base_url}/management/conversations", headers=MANAGEMENT)
    assert created.status_code == 201  # faults only touch stream requests


def test_fault_validation() -> None:
    with pytest.raises(ValidationError):
        Fault(html_error=True)
    with pytest.raises(ValidationError):
        Fault(status=200)
    with pytest.raises(ValidationError):
        Fault(times=0)
    with pytest.raises(ValidationError):
        Fault.model_validate({"raw_chunks": ["€ is not latin-1"]})
    with pytest.raises(ValidationError):
        Fault.model_validate({"chunking": "lines"})
    assert Fault.model_validate({"raw_chunks": ["\xff"]}).raw_chunks == [b"\xff"]
    assert Fault(raw_chunks=[b"\x00\xff"]).model_dump(mode="json")["raw_chunks"] == ["\x00\xff"]


async def test_delay_between_events(client: httpx2.AsyncClient) -> None:
    async with Sandbox(SandboxConfig(delay=0.01)) as sb:
        conversation_id = await conversation(client, sb)
        started = time.monotonic()
        response = await send(client, sb, conversation_id, "hi")
        frames = response.text.count("\n\n")
        assert time.monotonic() - started >= 0.01 * (frames - 1)
