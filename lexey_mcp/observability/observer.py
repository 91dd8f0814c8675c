"""The `Observer` a server (and its client) records into and asks for admission: its metrics, spans, rate limit,
stream slots, readiness checks and the one Redis client they share."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_REQUEST

from ..config import KeyKind, Settings
from ..redis_connection import SharedRedis
from ..tool_errors import tool_error
from .logs import CallContext, current_call
from .metrics import Metrics, tool_result_label
from .rate_limits import Rate, RateLimited, RateLimits
from .stream_slots import StreamSlots
from .tracing import Upstream

if TYPE_CHECKING:
    from mcp.server import ServerRequestContext
    from mcp.server.context import CallNext, ServerMiddleware

#: Readiness: a named check answers a problem (text) or None.
ReadinessCheck = Callable[[], Awaitable[str | None]]


class Observer:
    """What one server records (metrics, spans) and admits (rate limit, stream slots), and its readiness checks.

    `enabled=False` records nothing (limits still apply): the baseline of the overhead benchmark.
    """

    def __init__(self, settings: Settings, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.redis_prefix = settings.redis_prefix()
        #: The server's one client for LEXEY_REDIS_URL (rate limits, confirmations, readiness); None when unset.
        self.shared_redis = SharedRedis(settings.redis_url.get_secret_value()) if settings.redis_url else None
        self.rate_limits = (
            RateLimits(Rate.parse(settings.rate_limit), self.shared_redis, self.redis_prefix, self._count_refusal)
            if settings.rate_limit
            else None
        )
        self.stream_slots = (
            StreamSlots(settings.max_concurrent_streams, settings.stream_slot_wait)
            if settings.max_concurrent_streams
            else None
        )
        #: Named readiness checks, run in order by /readyz; other parts of the server add theirs.
        self.readiness: dict[str, ReadinessCheck] = {}
        self._metrics: Metrics | None = None

    @property
    def metrics(self) -> Metrics:
        if self._metrics is None:
            self._metrics = Metrics()
        return self._metrics

    async def aclose(self) -> None:
        if self.shared_redis is not None:
            await self.shared_redis.aclose()

    def webhook_received(self, result: str) -> None:
        """Count one webhook delivery. `result` is a fixed word (accepted, duplicate, bad_signature, …), never
        anything from the request."""
        if self.enabled:
            self.metrics.webhooks_received.labels(result).inc()

    def events_evicted(self, count: int) -> None:
        """Count events the event store dropped to stay under its size cap."""
        if self.enabled:
            self.metrics.events_evicted.inc(count)

    def _count_refusal(self) -> None:
        if self.enabled:
            self.metrics.rate_limited.inc()

    def upstream(self, api: KeyKind, *, stream: bool) -> Upstream:
        """Around one upstream request (its retries and, for a stream, its reading): `async with`."""
        return Upstream(api, stream=stream, metrics=self.metrics if self.enabled else None, slots=self.stream_slots)

    async def charge(self, kind: KeyKind, settings: Settings) -> None:
        """Count one more upstream use of the key for `kind` (one run of a test suite, say) against the rate limit;
        `RateLimited` when it is spent."""
        refusal = await self._refusal(kind, settings)
        if refusal is not None:
            raise RateLimited(refusal)

    async def _refusal(self, kind: KeyKind | None, settings: Settings) -> str | None:
        if self.rate_limits is None or kind is None:
            return None
        return await self.rate_limits.refusal(kind, settings)

    def middleware(
        self,
        tool_keys: Mapping[str, KeyKind | None],
        settings_of: Callable[[Any], Settings],
        resource_keys: Mapping[str, KeyKind] | None = None,
    ) -> ServerMiddleware[Any]:
        """Server middleware for tools/call: log context, the per-key rate limit, the call's metrics.

        `tool_keys`: each registered tool and the key kind it uses (None: no upstream key). `resource_keys`: the key
        a read of a resource URI starting with each prefix uses (the read counts against it). `settings_of(ctx)`:
        the settings a request runs with (its key comes from `request_keys.key_for`).
        """

        def resource_kind(uri: object) -> KeyKind | None:
            prefixes = (resource_keys or {}).items()
            return next((k for prefix, k in prefixes if isinstance(uri, str) and uri.startswith(prefix)), None)

        async def observe(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
            if ctx.method == "resources/read":  # a read that goes upstream counts against its key like a tool call
                kind = resource_kind(ctx.params.get("uri") if ctx.params else None)
                refusal = await self._refusal(kind, settings_of(ctx))
                if refusal is not None:
                    raise MCPError(code=INVALID_REQUEST, message=refusal)
                return await call_next(ctx)
            if ctx.method != "tools/call":
                return await call_next(ctx)
            name = ctx.params.get("name") if ctx.params else None
            tool = name if isinstance(name, str) and name in tool_keys else "unknown"
            token = current_call.set(CallContext(tool, None if ctx.request_id is None else str(ctx.request_id)))
            started = time.perf_counter()
            label = "tool_error"
            try:
                refusal = await self._refusal(tool_keys.get(tool), settings_of(ctx))
                result = tool_error(refusal) if refusal is not None else await call_next(ctx)
                label = tool_result_label(result)
                return result
            finally:
                current_call.reset(token)
                if self.enabled:
                    self.metrics.tool_calls.labels(tool, label).inc()
                    self.metrics.tool_call_duration.labels(tool).observe(time.perf_counter() - started)

        return observe
