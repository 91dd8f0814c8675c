"""An upstream that never ends a stream cannot grow the server's memory or its result without bound.

Each shape below streams for the whole `LEXEY_STREAM_TIMEOUT` as fast as the loopback-free transport allows
(64 KiB chunks of small events): endless statuses, endless id gaps, endless tool steps, endless reasoning.
The result must stay small (statuses, id ranges, tool steps and reasoning parts are capped and counted) and
the process's resident memory must not grow with the stream. The normal suite runs each for a few seconds;
`--soak` runs each for the default stream timeout (130 s) and prints the peak RSS.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx2
import pytest

from lexey_mcp.client import LexeyClient
from lexey_mcp.config import Settings
from lexey_mcp.models import ChatResult
from tests.streams import CID, settings
from tests.waiting import sample_every

pytestmark = pytest.mark.anyio

SHORT_TIMEOUT = 1.5  # 150,000 events or more even on a loaded machine (measured: 124,000-176,000 a second)
#: The result of any of these shapes, as JSON: a few hundred KB at most (100 statuses of 200 characters, 1,000
#: missing ids, 200 tool steps, 200 reasoning parts of 100 characters).
RESULT_LIMIT = 512 * 1024
#: RSS growth allowed while streaming: allocator noise (measured: under 300 KiB). Unbounded, id gaps alone grew by
#: ~40 MiB in 3 s, some 80 bytes an event: 12 MiB in the 150,000 events of the short run.
RSS_GROWTH_LIMIT_KB = 4 * 1024


def status_events(start: int) -> Iterator[bytes]:
    for i in range(start, start + 500):
        yield b'id: %d\ndata: {"type":"status","status":"pending-%d"}\n\n' % (i, i)


def id_gaps(start: int) -> Iterator[bytes]:
    for i in range(start, start + 500):
        yield b'id: %d\ndata: {"type":"delta","text":""}\n\n' % (2 * i)


def tool_steps(start: int) -> Iterator[bytes]:
    for _ in range(500):
        yield b'event: tool_step\ndata: {"tool":"search_contacts","status":"started","summary":""}\n\n'


def thinking(start: int) -> Iterator[bytes]:
    for _ in range(500):
        yield b'event: thinking\ndata: {"text":"' + b"hmm " * 25 + b'"}\n\n'


SHAPES: dict[str, tuple[Callable[[int], Iterator[bytes]], str]] = {
    "endless status": (status_events, "customer"),
    "endless id gaps": (id_gaps, "customer"),
    "endless tool_steps": (tool_steps, "lexi"),
    "endless thinking": (thinking, "lexi"),
}


def rss_kib() -> int:
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def endless(shape: Callable[[int], Iterator[bytes]]) -> httpx2.MockTransport:
    async def body() -> AsyncIterator[bytes]:
        start = 1
        while True:
            yield b"".join(shape(start))
            start += 500
            await anyio.lowlevel.checkpoint()  # a socket read is a checkpoint too: the deadline can cancel here

    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    return httpx2.MockTransport(respond)


async def run_shape(name: str, s: Settings) -> tuple[ChatResult, int, int, int]:
    """The result, its JSON size, the RSS growth (KiB) at the peak of the stream, and that peak (KiB)."""
    shape, api = SHAPES[name]
    peak = before = rss_kib()
    async with anyio.create_task_group() as tg, LexeyClient(s, transport=endless(shape)) as client:

        def sample() -> None:
            nonlocal peak
            peak = max(peak, rss_kib())

        tg.start_soon(sample_every, 0.05, sample)
        if api == "lexi":
            result: ChatResult = await client.lexi_chat("hi")
        else:
            result = await client.customer.send_message(CID, "hi")
        peak = max(peak, rss_kib())
        tg.cancel_scope.cancel()
    return result, len(json.dumps(result.model_dump(mode="json"))), peak - before, peak


@pytest.mark.parametrize("name", SHAPES)
async def test_an_endless_stream_keeps_the_result_and_memory_bounded(name: str) -> None:
    result, size, growth, _ = await run_shape(name, settings(stream_timeout=SHORT_TIMEOUT))
    assert (result.outcome, result.partial_reason) == ("partial", "timeout")
    assert result.events_received > 50_000  # the stream really was endless, not a trickle
    assert size < RESULT_LIMIT, f"{name}: a {size:,}-byte result"
    assert growth < RSS_GROWTH_LIMIT_KB, f"{name}: RSS grew by {growth:,} KiB"


@pytest.mark.soak
@pytest.mark.parametrize("name", SHAPES)
async def test_soak_an_endless_stream_for_the_default_stream_timeout(name: str) -> None:
    timeout = Settings.model_fields["stream_timeout"].default
    result, size, growth, peak = await run_shape(name, settings(stream_timeout=timeout))
    print(
        f"\n{name}: {result.events_received:,} events in {timeout:g} s, result {size:,} B, "
        f"peak RSS {peak / 1024:.0f} MiB (+{growth:,} KiB while streaming)"
    )
    assert (result.outcome, result.partial_reason) == ("partial", "timeout")
    assert size < RESULT_LIMIT
    assert growth < RSS_GROWTH_LIMIT_KB
