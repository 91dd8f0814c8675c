"""The one way this package connects to Redis (LEXEY_REDIS_URL): events, notifications, rate limits and used
confirmations all use `connect`.

redis-py loads on the first connection, never on import of this module: it costs ~80 ms of cold start (measured with
`python -X importtime`), and only a deployment that sets LEXEY_REDIS_URL uses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from redis.asyncio import Redis


def location(url: str) -> str:
    """host:port/db of a Redis URL, for messages (never its password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"


def connect(url: str, **options: Any) -> Redis:
    """A redis-py asyncio client that fails fast (a webhook answered 503 is retried by Lexey; a hang is not)."""
    # lazy: redis.asyncio is ~80 ms of cold start (-X importtime), needed only with LEXEY_REDIS_URL
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    defaults: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0, "retry": Retry(NoBackoff(), 0)}
    try:
        return Redis.from_url(url, **{**defaults, **options})
    except ValueError as exc:  # as unreachable as a server that is down, and said as clearly (never the URL itself)
        raise RedisConnectionError(f"LEXEY_REDIS_URL is not a redis://host:port/db URL ({exc})") from None


def errors() -> tuple[type[BaseException], ...]:
    """What a Redis command raises when Redis cannot be reached or refuses."""
    from redis.exceptions import ConnectionError as RedisConnectionError  # lazy: as in `connect`
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisError, RedisConnectionError, RedisTimeoutError, OSError)


class SharedRedis:
    """One client for a server's short commands (rate limits, confirmations, readiness), made on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Redis | None = None

    def client(self) -> Redis:
        if self._client is None:
            self._client = connect(self.url)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
