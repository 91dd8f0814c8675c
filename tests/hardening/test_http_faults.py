"""HTTP faults over real loopback (the sandbox and raw sockets), and the caps at the byte level."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import SocketStream

from lexey_mcp import errors
from lexey_mcp.client import LexeyClient
from lexey_mcp.sandbox import Fault, Sandbox
from tests.conftest import sandbox_settings_for
from tests.streams import CID, chat_event, settings
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

CHAT_STATUSES = {
    400: errors.BadRequestError,
    401: errors.AuthenticationError,
    402: errors.PaymentRequiredError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    429: errors.RateLimitError,
    500: errors.ServerError,
    503: errors.ServerError,
}
LEXI_CODES = {
    400: "validation_error",
    401: "invalid_key",
    402: "insufficient_credits",
    403: "insufficient_permissions",
    404: "conversation_not_found",
    429: "rate_limited",
}


def client_for(sb: Sandbox, **overrides: Any) -> LexeyClient:
    return LexeyClient(sandbox_settings_for(sb, **overrides), trust_env=False)


async def new_conversation(c: LexeyClient, kind: str = "customer") -> str:
    api = c.customer if kind == "customer" else c.management
    return await api.create_conversation()


@pytest.mark.parametrize("kind", ["customer", "management"])
@pytest.mark.parametrize("status", sorted(CHAT_STATUSES))
async def test_every_documented_chat_status(sandbox: Sandbox, kind: str, status: int) -> None:
    async with client_for(sandbox) as c:
        cid = await new_conversation(c, kind)
        sandbox.inject(Fault(target=kind, status=status))
        api = c.customer if kind == "customer" else c.management
        with pytest.raises(CHAT_STATUSES[status]) as info:
            await api.send_message(cid, "hello")
    assert info.value.status == status
    assert info.value.message  # the sandbox's {"error": "..."} text
    assert info.value.request_id
    assert sandbox.stats.requests == 2  # never re-sent


@pytest.mark.parametrize("status", sorted(LEXI_CODES))
async def test_every_documented_lexi_status(sandbox: Sandbox, status: int) -> None:
    sandbox.inject(Fault(target="lexi", status=status, times=5))
    async with client_for(sandbox, max_retries=0) as c:
        with pytest.raises(CHAT_STATUSES[status]) as info:
            await c.lexi_chat("hello")
    assert (info.value.status, info.value.code) == (status, LEXI_CODES[status])
    assert info.value.api == "lexi"


async def test_html_502_from_a_proxy(sandbox: Sandbox) -> None:
    async with client_for(sandbox) as c:
        cid = await new_conversation(c)
        sandbox.inject(Fault(target="customer", status=502, html_error=True))
        with pytest.raises(errors.ServerError) as info:
            await c.customer.send_message(cid, "hello")
    assert "<" not in str(info.value)
    assert "text/html" in str(info.value)


async def test_ok_with_the_wrong_content_type(sandbox: Sandbox) -> None:
    async with client_for(sandbox) as c:
        cid = await new_conversation(c)
        sandbox.inject(Fault(target="customer", content_type="application/json"))
        with pytest.raises(errors.LexeyProtocolError, match="instead of an event stream"):
            await c.customer.send_message(cid, "hello")


async def test_ok_with_an_empty_body(sandbox: Sandbox) -> None:
    async with client_for(sandbox) as c:
        cid = await new_conversation(c)
        sandbox.inject(Fault(target="customer", raw_chunks=[]))
        result = await c.customer.send_message(cid, "hello")
    assert (result.outcome, result.partial_reason, result.text) == ("partial", "ended_without_done", "")


@pytest.mark.parametrize("after", [0, 1, 3])
async def test_connection_reset_after_n_events(sandbox: Sandbox, after: int) -> None:
    async with client_for(sandbox) as c:
        cid = await new_conversation(c)
        sandbox.inject(Fault(target="customer", drop_after=after))
        result = await c.customer.send_message(cid, "Tell me everything about your business please")
    assert (result.outcome, result.partial_reason) == ("partial", "connection_lost")
    assert result.events_received == after
    assert len(result.text.split()) == after  # one word per delta, each kept


async def test_headers_then_silence_hits_the_read_timeout(sandbox: Sandbox) -> None:
    async with client_for(sandbox, read_timeout=0.3) as c:
        cid = await new_conversation(c)
        sandbox.inject(Fault(target="customer", stall_after=2, stall_seconds=30))
        started = time.monotonic()
        result = await c.customer.send_message(cid, "Tell me everything about your business please")
    assert time.monotonic() - started < 5
    assert (result.outcome, result.partial_reason, result.events_received) == ("partial", "timeout", 2)


async def test_slow_drip_that_never_ends_hits_the_overall_deadline(sandbox: Sandbox) -> None:
    drip = [chat_event(1, {"type": "delta", "text": "drip"}), *[b": still here\n"] * 10_000]
    async with client_for(sandbox, stream_timeout=0.6, read_timeout=5) as c:
        cid = await new_conversation(c)
        sandbox.inject(Fault(target="customer", raw_chunks=drip, drip_seconds=0.02))
        started = time.monotonic()
        with anyio.fail_after(10):  # a broken deadline fails here instead of hanging the suite
            result = await c.customer.send_message(cid, "hello")
        elapsed = time.monotonic() - started
        assert 0.5 < elapsed < 3
    assert (result.outcome, result.partial_reason, result.text) == ("partial", "timeout", "drip")
    with anyio.fail_after(2):
        assert await sandbox.wait_for_stream_closed(timeout=2) in ("disconnected", "cancelled")


@pytest.mark.parametrize(("deadline", "outcome"), [(1.5, "complete"), (0.25, "partial")])
async def test_done_just_inside_and_just_outside_the_deadline(sandbox: Sandbox, deadline: float, outcome: str) -> None:
    # Two writes 0.5 s apart: [DONE] lands at ~0.5 s.
    chunks = [chat_event(1, {"type": "delta", "text": "a"}), chat_event(2, "[DONE]")]
    async with client_for(sandbox) as setup:  # the deadline is the stream's: a loaded machine may be slow to create
        cid = await new_conversation(setup)
    async with client_for(sandbox, stream_timeout=deadline) as c:
        sandbox.inject(Fault(target="customer", raw_chunks=chunks, drip_seconds=0.5))
        with anyio.fail_after(5):
            result = await c.customer.send_message(cid, "hello")
    assert result.outcome == outcome
    assert result.partial_reason == (None if outcome == "complete" else "timeout")


async def test_id_gaps_repeats_and_regressions_over_http(sandbox: Sandbox) -> None:
    ids = [1, 2, 2, 5, 4, 9, 3]
    chunks = [chat_event(i, {"type": "delta", "text": str(i)}) for i in ids] + [chat_event(10, "[DONE]")]
    async with client_for(sandbox) as c:
        cid = await new_conversation(c)
        sandbox.inject(Fault(target="customer", raw_chunks=chunks, chunking="byte"))
        result = await c.customer.send_message(cid, "hello")
    assert result.text == "1225493"
    assert result.missing_event_ids == [6, 7, 8]
    assert result.last_event_id == 10


async def test_gapped_ids_from_the_sandbox_fault(sandbox: Sandbox) -> None:
    async with client_for(sandbox) as c:
        cid = await new_conversation(c)
        sandbox.inject(Fault(target="customer", id_gaps=True))
        result = await c.customer.send_message(cid, "Tell me everything about your business please")
    assert result.outcome == "complete"
    assert result.missing_event_ids
    assert result.missing_event_count == len(result.missing_event_ids)


def _upstream(body: AsyncIterator[bytes]) -> httpx2.MockTransport:
    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return httpx2.MockTransport(respond)


async def test_a_50_mb_single_event_is_skipped_with_memory_bounded() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'id: 1\ndata: {"type":"delta","text":"'
        block = b"x" * 65536
        for _ in range(50 * 16):  # 50 MiB
            yield block
        yield b'"}\n\n' + chat_event(2, {"type": "delta", "text": "after"}) + chat_event(3, "[DONE]")

    tracemalloc.start()
    try:
        async with LexeyClient(settings(), transport=_upstream(body())) as c:
            result = await c.customer.send_message(CID, "hi")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.outcome, result.text, result.skipped_events, result.missing_event_ids) == (
        "complete",
        "after",
        1,
        [],
    )
    assert peak < 6 * 1024 * 1024  # the 1 MiB event cap, a chunk or two, and the client: never the 50 MB


_MILLION_DELTAS = """
import resource, sys, anyio, httpx2
from lexey_mcp.client import LexeyClient
from tests.streams import CID, chat_event, settings

EVENTS = 1_000_000

async def body():
    for start in range(1, EVENTS + 1, 2000):
        yield b"".join(b'id: %d\\ndata: {"type":"delta","text":"x"}\\n\\n' % i for i in range(start, start + 2000))
    yield chat_event(EVENTS + 1, "[DONE]")

def respond(request):
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body())

async def main():
    async with LexeyClient(settings(), transport=httpx2.MockTransport(respond)) as c:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = await c.customer.send_message(CID, "hi")
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(result.outcome, len(result.text), result.events_received, result.missing_event_count, (after - before) * 1024)

anyio.run(main)
"""


@pytest.mark.e2e
def test_a_million_tiny_deltas_fold_with_memory_bounded() -> None:
    # A fresh process, so peak RSS speaks of this fold alone (tracemalloc would slow it tenfold).
    done = subprocess.run(
        [sys.executable, "-c", _MILLION_DELTAS],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    outcome, text_chars, events, missing, grown = done.stdout.split()
    assert (outcome, int(text_chars), int(events), int(missing)) == ("complete", 1_000_000, 1_000_000, 0)
    assert int(grown) < 40 * 1024 * 1024, f"peak RSS grew {int(grown) / 2**20:.1f} MiB for 1 MB of text"


async def test_a_million_tiny_deltas_stop_at_the_reply_cap() -> None:
    async def body() -> AsyncIterator[bytes]:
        for start in range(1, 1_000_001, 1000):
            yield b"".join(b'id: %d\ndata: {"type":"delta","text":"x"}\n\n' % i for i in range(start, start + 1000))

    async with LexeyClient(settings(max_reply_chars=50_000), transport=_upstream(body())) as c:
        result = await c.customer.send_message(CID, "hi")
    assert (result.outcome, result.partial_reason, len(result.text)) == ("partial", "reply_too_large", 50_000)
    assert result.events_received < 52_000


async def test_a_redirect_to_another_host_is_never_followed(anyio_backend: str) -> None:
    stolen: list[bytes] = []

    async def thief(stream: SocketStream) -> None:
        async with stream:
            stolen.append(await stream.receive())

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as thief_listener,
        await anyio.create_tcp_listener(local_host="127.0.0.1") as redirector,
        anyio.create_task_group() as tg,
    ):
        thief_port = thief_listener.extra(anyio.abc.SocketAttribute.local_port)
        redirect_port = redirector.extra(anyio.abc.SocketAttribute.local_port)

        async def redirect(stream: SocketStream) -> None:
            async with stream:
                await stream.receive()
                await stream.send(
                    b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:%d/steal\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n" % thief_port
                )

        tg.start_soon(thief_listener.serve, thief)
        tg.start_soon(redirector.serve, redirect)
        s = settings(base_url=f"http://127.0.0.1:{redirect_port}/api/v1")
        async with LexeyClient(s, trust_env=False) as c:
            with pytest.raises(errors.LexeyProtocolError, match="not followed"):
                await c.customer.send_message(CID, "hi")
            with pytest.raises(errors.LexeyProtocolError, match="not followed"):
                await c.customer.create_conversation()
        # A probe of our own, sent last: once the thief has it, it has what reached it before.
        async with await anyio.connect_tcp("127.0.0.1", thief_port) as probe:
            await probe.send(b"probe")
            await wait_until(lambda: b"probe" in stolen, "the thief to take the probe")
        tg.cancel_scope.cancel()
    assert stolen == [b"probe"]


def _http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "retried", "min_wait"),
    [
        ("1", True, 0.9),
        ("date +2", True, 0.5),  # an HTTP date (whole seconds: the wait is 1-2 s)
        ("date -3600", True, 0.0),  # in the past: at once
        ("999999", False, 0.0),  # absurdly large: not waited for, reported
    ],
)
async def test_retry_after_forms(sandbox: Sandbox, retry_after: str, retried: bool, min_wait: float) -> None:
    if retry_after.startswith("date "):
        retry_after = _http_date(float(retry_after.removeprefix("date ")))
    sandbox.inject(Fault(target="lexi", status=429, retry_after=retry_after))
    started = time.monotonic()
    async with client_for(sandbox, max_retry_wait=5) as c:
        if retried:
            result = await c.lexi_chat("Which deals are open?")
            assert result.outcome == "complete"
        else:
            with pytest.raises(errors.RateLimitError) as info:
                await c.lexi_chat("Which deals are open?")
            assert info.value.retry_after == 999999
            assert "Retry after 999999 s" in str(info.value)
    elapsed = time.monotonic() - started
    assert elapsed >= min_wait
    assert elapsed < (4 if retried else 1)
    assert sandbox.stats.requests == (2 if retried else 1)
