"""The per-process cap on open upstream streams (LEXEY_MCP_MAX_CONCURRENT_STREAMS)."""

from __future__ import annotations

import anyio

from ..errors import LexeyError


class StreamSlotsBusy(LexeyError):
    """Every stream slot (LEXEY_MCP_MAX_CONCURRENT_STREAMS) stayed taken for the whole wait."""


class StreamSlots:
    """At most `size` upstream streams at once in this process; a call waits up to `wait` seconds for a slot."""

    def __init__(self, size: int, wait: float) -> None:
        self.size = size
        self.wait = wait
        self._semaphore: anyio.Semaphore | None = None

    async def acquire(self) -> None:
        if self._semaphore is None:
            self._semaphore = anyio.Semaphore(self.size)
        with anyio.move_on_after(self.wait):
            await self._semaphore.acquire()
            return
        raise StreamSlotsBusy(
            f"All {self.size} upstream stream slots (LEXEY_MCP_MAX_CONCURRENT_STREAMS) stayed busy for "
            f"{self.wait:g} s; nothing was sent. Try again shortly."
        )

    def release(self) -> None:
        assert self._semaphore is not None
        self._semaphore.release()
