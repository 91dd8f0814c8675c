"""How often a stream reports progress and waits between reads: budgets shared by the streams of one process.

A stream alone is read as it comes and reports twice a second. A server with many live streams spends its CPU on each
wait for the socket (~60 µs in the event loop, anyio, httpcore and h11, for an event of a few bytes) and on each
progress notification (~0.2 ms in the SDK: task hand-offs, framing, a socket write). So its streams share one progress
rate, and with many at once a stream that trickles in is read in batches (BENCHMARKS.md, capacity).
"""

from __future__ import annotations

import math
import time
from types import TracebackType
from typing import Self

import anyio

#: Seconds between two progress calls of one stream. A live stream brings ~25 events a second; at 0.05 s nearly every
#: event became a notification of the whole text so far.
PROGRESS_INTERVAL = 0.5
#: Progress calls a second across the reporting streams of this process: with more than PROGRESS_RATE ×
#: PROGRESS_INTERVAL at once, each reports less often (200 streams: every 2 s).
PROGRESS_RATE = 100.0
#: With TRICKLE_STREAMS or more streams read at once, a chunk of less than TRICKLE_BYTES that came after a wait of
#: TRICKLE_WAIT or more makes the next read wait TRICKLE_PAUSE seconds first (never past the deadline) and then take
#: what arrived meanwhile in one go: the text, and the reply's end, come up to TRICKLE_PAUSE later. On a loop so busy
#: that getting back to a read takes TRICKLE_WAIT, a fast stream pauses too, then takes all that arrived meanwhile.
TRICKLE_STREAMS = 20
TRICKLE_BYTES = 4096
TRICKLE_WAIT = 0.005
TRICKLE_PAUSE = 0.2


class Pace:
    """One stream's pacing; counted among the streams of this process while entered."""

    live = 0
    reporting = 0

    def __init__(self, reporting: bool, interval: float | None, deadline: float) -> None:
        """`interval`: seconds between two progress calls (None: PROGRESS_INTERVAL); `deadline` in
        `anyio.current_time()`."""
        self._reporting = int(reporting)
        self._interval = PROGRESS_INTERVAL if interval is None else interval
        self._deadline = deadline
        self._reported = -math.inf
        self._asked = time.monotonic()
        self._waited = 0.0

    def __enter__(self) -> Self:
        Pace.live += 1
        Pace.reporting += self._reporting
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        Pace.live -= 1
        Pace.reporting -= self._reporting

    def arrived(self) -> None:
        """A chunk is here: how long it was waited for decides the pause before the next read."""
        self._waited = time.monotonic() - self._asked

    def report_due(self) -> bool:
        """Whether this stream may report progress now; if so, the interval starts again."""
        now = time.monotonic()  # not anyio.current_time(), which finds the event loop each time (0.5 µs)
        if now - self._reported < max(self._interval, Pace.reporting / PROGRESS_RATE):
            return False
        self._reported = now
        return True

    async def next_read(self, size: int) -> None:
        """Before asking for the next chunk (the last was `size` bytes): a pause, when this stream trickles and many
        are read at once."""
        if (
            self._waited >= TRICKLE_WAIT
            and size < TRICKLE_BYTES
            and Pace.live >= TRICKLE_STREAMS
            and self._deadline - anyio.current_time() > TRICKLE_PAUSE
        ):
            await anyio.sleep(TRICKLE_PAUSE)
        self._asked = time.monotonic()
