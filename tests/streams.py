"""Byte-level building blocks for stream tests: SSE bodies, chunkings and mock upstreams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import anyio
import httpx2

from lexey_mcp.config import Settings

CID = "550e8400-e29b-41d4-a716-446655440000"
CID2 = "6fa459ea-ee8a-3ca4-894e-db77e160355e"
# Distinctive keys: long enough that any 8-character slice is unmistakable in a scan.
CUSTOMER_KEY = "lxc_Q7vZp2KmX9rT4wLs8NbY3cJd"
MANAGEMENT_KEY = "lxm_H5gFq1VnR6tYe0UiO8pAs2Dk"
LEXI_KEY = "wbk_M3jKl9ZxC7vBn4Qw1ErTy6Ui"
ALL_KEYS = (CUSTOMER_KEY, MANAGEMENT_KEY, LEXI_KEY)


def settings(**overrides: object) -> Settings:
    values: dict[str, Any] = {
        "customer_key": CUSTOMER_KEY,
        "management_key": MANAGEMENT_KEY,
        "lexi_api_key": LEXI_KEY,
        "base_url": "https://lexey.test/api/v1",
        "lexi_base_url": "https://lexi.test/functions/v1/api-gateway",
        "max_retry_wait": 0.5,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def chat_event(event_id: int | None, payload: object) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {data}\n\n".encode()


def chat_stream(*deltas: str, status: str | None = None, done: bool = True) -> bytes:
    """A well-formed chat stream: ids from 1, one delta per text, an optional status, then [DONE]."""
    events = [chat_event(i, {"type": "delta", "text": t}) for i, t in enumerate(deltas, 1)]
    if status is not None:
        events.append(chat_event(len(events) + 1, {"type": "status", "status": status}))
    if done:
        events.append(chat_event(len(events) + 1, "[DONE]"))
    return b"".join(events)


def lexi_event(name: str, payload: object) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"event: {name}\ndata: {data}\n\n".encode()


def split_at(body: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(body)})
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


def bytewise(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


async def aiter_chunks(chunks: Sequence[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def arriving(
    chunks: Sequence[bytes], every: float = 0.0, at: Sequence[float] | None = None
) -> AsyncIterator[bytes]:
    """`chunks` as a socket delivers a live stream: the i-th arrives `at[i]` (default `i * every`) seconds after the
    first read, whether or not anyone reads meanwhile; a read takes the next chunk that has arrived (one at a time,
    as httpcore yields HTTP chunks), or waits for it."""
    start = anyio.current_time()
    for i, chunk in enumerate(chunks):
        delay = start + (at[i] if at is not None else i * every) - anyio.current_time()
        if delay > 0:
            await anyio.sleep(delay)  # the arrival times are what a test scripts
        yield chunk


class Upstream:
    """A scripted upstream for `httpx2.MockTransport`: answers each request with the next response factory."""

    def __init__(self, *responses: Callable[[httpx2.Request], httpx2.Response]) -> None:
        self._responses = list(responses)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if not self._responses:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        return self._responses.pop(0)(request)

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self)


def sse(
    chunks: Sequence[bytes] | bytes,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    error: Exception | None = None,
) -> Callable[[httpx2.Request], httpx2.Response]:
    """A streamed event-stream response; `error` is raised after the chunks, as a dropped connection would."""
    parts = [chunks] if isinstance(chunks, bytes) else list(chunks)

    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            yield part
        if error is not None:
            raise error

    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            status,
            headers={"content-type": "text/event-stream", "x-request-id": "req_test", **(headers or {})},
            content=body(),
        )

    return respond


def reply(
    status: int,
    body: bytes | object = b"",
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Callable[[httpx2.Request], httpx2.Response]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()

    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            status, headers={"content-type": content_type, "x-request-id": "req_err", **(headers or {})}, content=raw
        )

    return respond


def fail(exc: Exception) -> Callable[[httpx2.Request], httpx2.Response]:
    def respond(request: httpx2.Request) -> httpx2.Response:
        raise exc

    return respond
