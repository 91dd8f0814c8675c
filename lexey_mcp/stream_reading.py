"""Reading one streamed reply: its chunks through the SSE decoder into a fold until `[DONE]`, the reply cap, a
stall or the deadline, with progress paced; then the rest of the body drained, so its connection can be used again."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import httpx2

from .models import PartialReason
from .pacing import Pace
from .sse import SSEDecoder
from .streaming import Fold

#: Receives the reply's text so far, at most once per progress interval, and once more at the end.
OnText = Callable[[str], Awaitable[None]]

#: After `[DONE]`, the rest of the body (the chunked encoding's last chunk, usually in the same packet) is read for at
#: most DRAIN_SECONDS and DRAIN_BYTES: read to its end, the connection goes back to the pool, and the next call to the
#: API skips the TCP and TLS handshakes. A body that does not end by then is closed, as a stream ending early is.
DRAIN_SECONDS = 0.1
DRAIN_BYTES = 64 * 1024


async def read_stream(
    chunks: AsyncIterator[bytes],
    fold: Fold,
    *,
    max_event_bytes: int,
    on_text: OnText | None = None,
    progress_interval: float | None = None,
    deadline: float = math.inf,
) -> PartialReason | None:
    """Feed `chunks` through the SSE decoder into `fold` until `[DONE]`, the reply cap or `deadline` (in
    `anyio.current_time()`); why it ended early, if it did. The one place a stream's ending is decided.

    `on_text` gets the text so far at most once per `progress_interval` seconds (default `pacing.PROGRESS_INTERVAL`,
    longer while many streams report); not once more at the end: the result that follows has the whole reply, and a
    progress notification sent right before its result is lost by some clients (TypeScript SDK over stdio).
    """
    decoder = SSEDecoder(max_event_bytes)
    seen_version = 0
    reason: PartialReason | None = "ended_without_done"
    with Pace(on_text is not None, progress_interval, deadline) as pace, anyio.CancelScope(deadline=deadline) as scope:
        try:
            async for chunk in chunks:
                pace.arrived()
                fold.feed(decoder.feed(chunk))
                if fold.done or fold.too_large:
                    break
                if on_text is not None and fold.text_version != seen_version and pace.report_due():
                    seen_version = fold.text_version
                    await on_text(fold.text())
                await pace.next_read(len(chunk))
        except httpx2.TimeoutException:
            reason = "timeout"
        except httpx2.TransportError:
            reason = "connection_lost"
    if scope.cancelled_caught:
        reason = "timeout"
    # The cap first: a reply cut at it is partial even when [DONE] followed in the same chunk. A final event
    # that never got its blank line is dropped, as the spec says.
    if fold.too_large:
        return "reply_too_large"
    return None if fold.done else reason


async def drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what is left of a body whose stream reached `[DONE]`, within DRAIN_SECONDS and DRAIN_BYTES."""
    left = DRAIN_BYTES
    with anyio.move_on_after(DRAIN_SECONDS), contextlib.suppress(httpx2.TransportError):
        async for chunk in chunks:
            left -= len(chunk)
            if left < 0:
                break
