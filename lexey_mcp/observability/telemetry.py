"""Metrics and spans: the `Observer` a server (and its client) records into.

Metrics live on a Prometheus registry of their own (prometheus-client is imported on the first record, so a
plain start stays light). Spans use the OpenTelemetry API: with no SDK configured they cost next to
nothing. No label or attribute ever holds a key, a conversation id or message text.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_REQUEST, CallToolResult
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from ..config import KeyKind, Settings
from ..errors import LexeyConfigError, LexeyError
from ..tool_errors import tool_error
from .limits import Limiter, MemoryLimiter, Rate, RedisLimiter, StreamSlots, key_id
from .logs import CallContext, current_call

if TYPE_CHECKING:
    import httpx2
    from mcp.server import ServerRequestContext
    from mcp.server.context import CallNext, ServerMiddleware

    from ..models import PartialReason
    from ..streaming import Fold

logger = logging.getLogger("lexey_mcp.observability")
_tracer = trace.get_tracer("lexey_mcp")

#: Tool-call durations span milliseconds (reads) to the vendor's 120 s streams.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, float("inf"))
#: Readiness: a named check answers a problem (text) or None.
ReadinessCheck = Callable[[], Awaitable[str | None]]


class Metrics:
    """Every collector, on one `CollectorRegistry` (not the process-global one)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry()
        self.tool_calls = Counter(
            "lexey_mcp_tool_calls",
            "Tool calls by result (complete|error|partial|tool_error).",
            ["tool", "result"],
            registry=registry,
        )
        self.tool_call_duration = Histogram(
            "lexey_mcp_tool_call_duration_seconds",
            "Tool call duration.",
            ["tool"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.upstream_requests = Counter(
            "lexey_mcp_upstream_requests",
            "Upstream HTTP requests by API and HTTP status (or connect_error, timeout, transport_error).",
            ["api", "status"],
            registry=registry,
        )
        self.streams_active = Gauge(
            "lexey_mcp_streams_active", "Upstream streams open now.", ["api"], registry=registry
        )
        self.stream_events = Counter(
            "lexey_mcp_stream_events", "Events received in upstream streams.", ["api"], registry=registry
        )
        self.partial_results = Counter(
            "lexey_mcp_partial_results", "Streams that ended early, by reason.", ["api", "reason"], registry=registry
        )
        self.retries = Counter("lexey_mcp_retries", "Upstream requests sent again.", ["api"], registry=registry)
        self.rate_limited = Counter(
            "lexey_mcp_rate_limited", "Tool calls refused by LEXEY_MCP_RATE_LIMIT.", registry=registry
        )
        self.webhooks_received = Counter(
            "lexey_mcp_webhooks_received", "Webhook deliveries by result.", ["result"], registry=registry
        )
        self.events_evicted = Counter(
            "lexey_mcp_events_evicted",
            "Events dropped, oldest first, to keep the event store under LEXEY_EVENT_STORE_MAX_MB.",
            registry=registry,
        )

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def tool_result_label(result: object) -> str:
    """complete | error | partial | tool_error, from a tools/call result (wire dict or model)."""
    if isinstance(result, CallToolResult):
        is_error, structured = result.is_error, result.structured_content
    elif isinstance(result, Mapping):
        is_error, structured = result.get("isError") is True, result.get("structuredContent")
    else:
        return "complete"
    if is_error:
        return "tool_error"
    if not isinstance(structured, Mapping):
        return "complete"
    turns = structured.get("turns")
    results = [t for t in turns if isinstance(t, Mapping)] if isinstance(turns, list) else [structured]
    outcomes = {r.get("outcome") for r in results}
    return "error" if "error" in outcomes else "partial" if "partial" in outcomes else "complete"


class Observer:
    """What one server records: metrics, spans, rate limits, stream slots and readiness checks.

    `enabled=False` records nothing (limits still apply): the baseline of the overhead benchmark.
    """

    def __init__(self, settings: Settings, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
        self.redis_prefix = settings.redis_prefix()
        self.rate = Rate.parse(settings.rate_limit) if settings.rate_limit else None
        self.stream_slots = (
            StreamSlots(settings.max_concurrent_streams, settings.stream_slot_wait)
            if settings.max_concurrent_streams
            else None
        )
        #: Named readiness checks, run in order by /readyz; other parts of the server add theirs.
        self.readiness: dict[str, ReadinessCheck] = {}
        self._metrics: Metrics | None = None
        self._limiter: Limiter | None = None
        self._redis: Any = None

    @property
    def metrics(self) -> Metrics:
        if self._metrics is None:
            self._metrics = Metrics()
        return self._metrics

    def redis(self) -> Any:
        """The shared `redis.asyncio.Redis` client for LEXEY_REDIS_URL (made on first use)."""
        if self._redis is None:
            assert self.redis_url is not None
            try:
                import redis.asyncio
            except ImportError:
                raise LexeyConfigError(
                    "LEXEY_REDIS_URL is set but redis-py is not installed: pip install 'lexey-mcp[redis]'."
                ) from None
            self._redis = redis.asyncio.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=5)
        return self._redis

    async def aclose(self) -> None:
        if self._redis is not None:
            redis, self._redis, self._limiter = self._redis, None, None
            await redis.aclose()

    def limiter(self) -> Limiter | None:
        if self.rate is not None and self._limiter is None:
            self._limiter = (
                RedisLimiter(self.rate, self.redis(), self.redis_prefix) if self.redis_url else MemoryLimiter(self.rate)
            )
        return self._limiter

    def webhook_received(self, result: str) -> None:
        """Count one webhook delivery. `result` is a fixed word (accepted, duplicate, bad_signature, …), never
        anything from the request."""
        if self.enabled:
            self.metrics.webhooks_received.labels(result).inc()

    def events_evicted(self, count: int) -> None:
        """Count events the event store dropped to stay under its size cap."""
        if self.enabled:
            self.metrics.events_evicted.inc(count)

    def upstream(self, api: KeyKind, *, stream: bool) -> Upstream:
        """Around one upstream request (its retries and, for a stream, its reading): `async with`."""
        return Upstream(self, api, stream)

    def middleware(
        self,
        tool_keys: Mapping[str, KeyKind | None],
        settings_of: Callable[[Any], Settings],
        resource_keys: Mapping[str, KeyKind] | None = None,
    ) -> ServerMiddleware[Any]:
        """Server middleware for tools/call: log context, the per-key rate limit, the call's metrics.

        `tool_keys`: each registered tool and the key kind it uses (None: no upstream key). `resource_keys`: the key
        a read of a resource URI starting with each prefix uses (the read counts against it). `settings_of(ctx)`:
        the settings a request runs with (its keys come from `settings.key(kind)`).
        """

        async def observe(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
            if ctx.method == "resources/read":  # a read that goes upstream counts against its key like a tool call
                uri = ctx.params.get("uri") if ctx.params else None
                kind = next(
                    (
                        k
                        for prefix, k in (resource_keys or {}).items()
                        if isinstance(uri, str) and uri.startswith(prefix)
                    ),
                    None,
                )
                refusal = await self._check_rate(kind, settings_of(ctx))
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
                refusal = await self._check_rate(tool_keys.get(tool), settings_of(ctx))
                result = tool_error(refusal) if refusal is not None else await call_next(ctx)
                label = tool_result_label(result)
                return result
            finally:
                current_call.reset(token)
                if self.enabled:
                    self.metrics.tool_calls.labels(tool, label).inc()
                    self.metrics.tool_call_duration.labels(tool).observe(time.perf_counter() - started)

        return observe

    async def charge(self, kind: KeyKind, settings: Settings) -> None:
        """Count one more upstream use of `settings`' key for `kind` (one run of a test suite, say) against the rate
        limit; `RateLimited` when it is spent."""
        refusal = await self._check_rate(kind, settings)
        if refusal is not None:
            raise RateLimited(refusal)

    async def _check_rate(self, kind: KeyKind | None, settings: Settings) -> str | None:
        """Why this call may not go upstream now (its key's rate limit is reached), or None."""
        limiter = self.limiter() if kind is not None else None
        if limiter is None or kind is None:
            return None
        try:
            key = settings.key(kind)
        except LexeyError:
            return None  # the tool itself answers what to set
        try:
            wait = await limiter.hit(key_id(key))
        except Exception as exc:  # Redis away: serve rather than refuse everyone; /readyz reports it
            logger.warning("rate limit not checked: %s", exc if isinstance(exc, LexeyError) else type(exc).__name__)
            return None
        if wait is None:
            return None
        if self.enabled:
            self.metrics.rate_limited.inc()
        return (
            f"Rate limit reached for this {kind} key: {limiter.rate.text} tool calls (LEXEY_MCP_RATE_LIMIT). "
            f"Nothing was sent upstream. Retry in {math.ceil(wait) if wait >= 1 else round(wait, 2)} s."
        )


class RateLimited(LexeyError):
    """The key's LEXEY_MCP_RATE_LIMIT is spent; the message says when to retry."""


class Upstream:
    """One upstream request: a `lexey.upstream` span, its attempts, and (streams) how the stream ended."""

    __slots__ = ("_observer", "_streaming", "_token", "api", "attempts", "attributes", "span", "stream")

    def __init__(self, observer: Observer, api: KeyKind, stream: bool) -> None:
        self._observer = observer
        self.api = api
        self.stream = stream
        self.attempts = 0
        self._streaming = False
        self._token: Token[otel_context.Context] | None = None
        self.span: trace.Span = trace.INVALID_SPAN
        #: Set on the span when it ends, in one call.
        self.attributes: dict[str, str | int] = {}

    async def __aenter__(self) -> Self:
        slots = self._observer.stream_slots if self.stream else None
        if slots is not None:
            await slots.acquire()
        if self._observer.enabled:
            # Exceptions are not recorded on the span: their messages may quote upstream text.
            self.span = _tracer.start_span(
                "lexey.upstream", kind=trace.SpanKind.CLIENT, attributes={"lexey.api": self.api}
            )
            self._token = otel_context.attach(trace.set_span_in_context(self.span))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._token is not None:
                self.attributes["lexey.retry_count"] = max(self.attempts - 1, 0)
                if exc_type is not None:
                    self.attributes.update({"lexey.outcome": "failed", "error.type": exc_type.__name__})
                    self.span.set_status(trace.StatusCode.ERROR)
                elif not self.stream:
                    self.attributes["lexey.outcome"] = "complete"
                self.span.set_attributes(self.attributes)
                self.span.end()
                otel_context.detach(self._token)
            if self._streaming:
                self._observer.metrics.streams_active.labels(self.api).dec()
        finally:
            if self.stream and self._observer.stream_slots is not None:
                self._observer.stream_slots.release()

    async def send(self, http: httpx2.AsyncClient, request: httpx2.Request) -> httpx2.Response:
        """`http.send(request, stream=True)`, with the trace context in its headers, counted."""
        import httpx2

        observer = self._observer
        self.attempts += 1
        if not observer.enabled:
            return await http.send(request, stream=True)
        if self.attempts > 1:
            observer.metrics.retries.labels(self.api).inc()
            self.span.add_event("retry", {"lexey.attempt": self.attempts})
        propagate.inject(request.headers)
        status: str | None = None  # stays None when the send is cancelled
        try:
            response = await http.send(request, stream=True)
        except httpx2.ConnectError:
            status = "connect_error"
            raise
        except httpx2.TimeoutException:
            status = "timeout"
            raise
        except httpx2.TransportError:
            status = "transport_error"
            raise
        else:
            status = str(response.status_code)
            self.attributes["http.response.status_code"] = response.status_code
            if self.stream and response.is_success and not self._streaming:
                self._streaming = True
                observer.metrics.streams_active.labels(self.api).inc()
            return response
        finally:
            if status is not None:
                observer.metrics.upstream_requests.labels(self.api, status).inc()

    def ended(self, fold: Fold, reason: PartialReason | None) -> None:
        """Record how a stream ended (`read_stream`'s reason): outcome, events, partial reason."""
        if not self._observer.enabled:
            return
        outcome, partial_reason = fold.outcome(reason), reason
        metrics = self._observer.metrics
        metrics.stream_events.labels(self.api).inc(fold.events_received)
        self.attributes.update({"lexey.outcome": outcome, "lexey.events": fold.events_received})
        if partial_reason is not None:
            self.attributes["lexey.partial_reason"] = partial_reason
            if outcome == "partial":
                metrics.partial_results.labels(self.api, partial_reason).inc()
