"""The server's Prometheus collectors, and the result label of a tool call. No label ever holds a key, a
conversation id or message text."""

from __future__ import annotations

from collections.abc import Mapping

from mcp.types import CallToolResult

#: Tool-call durations span milliseconds (reads) to the vendor's 120 s streams.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, float("inf"))


class Metrics:
    """Every collector, on one `CollectorRegistry` (not the process-global one)."""

    def __init__(self) -> None:
        # lazy: prometheus_client is ~11 ms of cold start (-X importtime); made on the first record, not at start
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
        from prometheus_client import generate_latest  # lazy: as in __init__

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
