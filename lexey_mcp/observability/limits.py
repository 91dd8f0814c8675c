"""Per-key rate limits (in the process, or shared through Redis) and the per-process cap on open streams."""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import anyio

from ..errors import LexeyError

if TYPE_CHECKING:
    from pydantic import SecretStr

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)\s*$")
_WINDOWS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}


class StreamSlotsBusy(LexeyError):
    """Every stream slot (LEXEY_MCP_MAX_CONCURRENT_STREAMS) stayed taken for the whole wait."""


class Rate(NamedTuple):
    limit: int
    window: float
    text: str  # as configured, for messages

    @classmethod
    def parse(cls, text: str) -> Rate:
        match = _RATE.match(text)
        if match is None or int(match[1]) < 1:
            raise ValueError("LEXEY_MCP_RATE_LIMIT must look like 60/minute (N/second, N/minute or N/hour)")
        return cls(int(match[1]), _WINDOWS[match[2]], f"{int(match[1])}/{match[2]}")


def key_id(key: SecretStr) -> str:
    """How a key is known to the limiter and in Redis: a hash, never the key."""
    return hashlib.sha256(key.get_secret_value().encode()).hexdigest()[:32]


class Limiter(Protocol):
    rate: Rate

    async def hit(self, key_hash: str) -> float | None:
        """Count one call; None when it is allowed, else the seconds until the key's window resets."""


class MemoryLimiter:
    """Fixed windows per key, each starting at the key's first call in it. One process. O(1) per call: every window
    is `rate.window` long, so windows end in the order they started, and the expired ones leave from the front."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._windows: OrderedDict[str, list[float]] = OrderedDict()  # key hash -> [window end, calls in it]

    def __len__(self) -> int:
        return len(self._windows)

    async def hit(self, key_hash: str) -> float | None:
        now = self._clock()
        windows = self._windows
        while windows:
            first = next(iter(windows.values()))
            if first[0] > now:
                break
            windows.popitem(last=False)
        window = windows.get(key_hash)
        if window is None:
            window = windows[key_hash] = [now + self.rate.window, 0]
        window[1] += 1
        return None if window[1] <= self.rate.limit else window[0] - now


# INCR is atomic, so of N concurrent calls exactly `limit` see a count within it; the first call of a
# window sets its expiry.
_REDIS_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""


class RedisLimiter:
    """The same windows, in Redis: every replica pointing at it shares each key's count."""

    def __init__(self, rate: Rate, redis: Any, prefix: str) -> None:
        self.rate = rate
        self._prefix = prefix
        self._script = redis.register_script(_REDIS_HIT)

    async def hit(self, key_hash: str) -> float | None:
        count, ttl_ms = await self._script(
            keys=[f"{self._prefix}rate:{key_hash}"], args=[math.ceil(self.rate.window * 1000)]
        )
        return None if int(count) <= self.rate.limit else max(int(ttl_ms), 0) / 1000


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
