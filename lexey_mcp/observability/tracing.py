"""One upstream request as a `lexey.upstream` span (OpenTelemetry API: with no SDK configured it costs next to
nothing), with its metrics and, for a stream, the stream slot it holds. No attribute ever holds a key, a conversation
id or message text; exceptions are not recorded on the span, as their messages may quote upstream text."""

from __future__ import annotations

from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Self

import httpx2
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from ..vendor import Api
from .metrics import Metrics
from .stream_slots import StreamSlots

if TYPE_CHECKING:
    from ..models import PartialReason
    from ..streaming import Fold

_tracer = trace.get_tracer("lexey_mcp")


class Upstream:
    """One upstream request: a `lexey.upstream` span, its attempts, and (streams) how the stream ended.

    `metrics` None records nothing (no span either); `slots`: the stream cap a stream waits for."""

    __slots__ = ("_metrics", "_slots", "_streaming", "_token", "api", "attempts", "attributes", "span", "stream")

    def __init__(self, api: Api, *, stream: bool, metrics: Metrics | None, slots: StreamSlots | None) -> None:
        self._metrics = metrics
        self._slots = slots if stream else None
        self.api = api
        self.stream = stream
        self.attempts = 0
        self._streaming = False
        self._token: Token[otel_context.Context] | None = None
        self.span: trace.Span = trace.INVALID_SPAN
        #: Set on the span when it ends, in one call.
        self.attributes: dict[str, str | int] = {}

    async def __aenter__(self) -> Self:
        if self._slots is not None:
            await self._slots.acquire()
        if self._metrics is not None:
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
            if self._streaming and self._metrics is not None:
                self._metrics.streams_active.labels(self.api).dec()
        finally:
            if self._slots is not None:
                self._slots.release()

    async def send(self, http: httpx2.AsyncClient, request: httpx2.Request) -> httpx2.Response:
        """`http.send(request, stream=True)`, with the trace context in its headers, counted."""
        metrics = self._metrics
        self.attempts += 1
        if metrics is None:
            return await http.send(request, stream=True)
        if self.attempts > 1:
            metrics.retries.labels(self.api).inc()
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
                metrics.streams_active.labels(self.api).inc()
            return response
        finally:
            if status is not None:
                metrics.upstream_requests.labels(self.api, status).inc()

    def ended(self, fold: Fold, reason: PartialReason | None) -> None:
        """Record how a stream ended (`read_stream`'s reason): outcome, events, partial reason."""
        metrics = self._metrics
        if metrics is None:
            return
        outcome = fold.outcome(reason)
        metrics.stream_events.labels(self.api).inc(fold.events_received)
        self.attributes.update({"lexey.outcome": outcome, "lexey.events": fold.events_received})
        if reason is not None:
            self.attributes["lexey.partial_reason"] = reason
            if outcome == "partial":
                metrics.partial_results.labels(self.api, reason).inc()
