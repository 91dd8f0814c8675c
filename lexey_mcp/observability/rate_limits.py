"""Per-key rate limits (LEXEY_MCP_RATE_LIMIT): in the process, or shared by every replica through Redis."""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..errors import LexeyError
from ..redis_connection import SharedRedis
from ..request_keys import key_for
from ..vendor import Api

if TYPE_CHECKING:
    from pydantic import SecretStr

    from ..config import Settings

logger = logging.getLogger("lexey_mcp.observability")

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)\s*$")
_WINDOWS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}


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


class RateLimited(LexeyError):
    """The key's LEXEY_MCP_RATE_LIMIT is spent; the message says when to retry."""


class RateLimits:
    """The rate limit of one server: each upstream key's calls counted, in Redis when `redis` is given (its limiter
    is made on first use). `on_refused` hears of each refused call."""

    def __init__(self, rate: Rate, redis: SharedRedis | None, prefix: str, on_refused: Callable[[], None]) -> None:
        self.rate = rate
        self._redis = redis
        self._prefix = prefix
        self._on_refused = on_refused
        self._limiter: Limiter | None = None

    def limiter(self) -> Limiter:
        if self._limiter is None:
            redis = self._redis
            self._limiter = (
                RedisLimiter(self.rate, redis.client(), self._prefix) if redis is not None else MemoryLimiter(self.rate)
            )
        return self._limiter

    async def refusal(self, kind: Api, settings: Settings) -> str | None:
        """Why a call with the key for `kind` may not go upstream now (its rate limit is reached), or None."""
        try:
            key = key_for(settings, kind)
        except LexeyError:
            return None  # the tool itself answers what to set
        try:
            wait = await self.limiter().hit(key_id(key))
        except Exception as exc:  # Redis away: serve rather than refuse everyone; /readyz reports it
            logger.warning("rate limit not checked: %s", exc if isinstance(exc, LexeyError) else type(exc).__name__)
            return None
        if wait is None:
            return None
        self._on_refused()
        return (
            f"Rate limit reached for this {kind} key: {self.rate.text} tool calls (LEXEY_MCP_RATE_LIMIT). "
            f"Nothing was sent upstream. Retry in {math.ceil(wait) if wait >= 1 else round(wait, 2)} s."
        )
