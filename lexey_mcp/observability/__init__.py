"""Operations: health and readiness routes, Prometheus metrics, OpenTelemetry spans, per-key rate limits,
the stream cap and log formats. Importable without the MCP server; heavy libraries load on first use.

    observer = Observer(settings)                      # per server
    server.middleware.append(observer.middleware(…))   # tool-call metrics, rate limit, log context
    async with observer.upstream(api, stream=True) as upstream:   # around one upstream request (client)
        response = await upstream.send(http, request)
        upstream.ended(result)
"""

from .limits import MemoryLimiter, Rate, RedisLimiter, StreamSlotsBusy, key_id
from .logs import CallContext, JsonFormatter, LogFormat, RedactingFormatter, current_call, log_formatter
from .routes import add_readiness_checks, add_routes, readiness_problems, warn_about_redis
from .telemetry import Metrics, Observer, RateLimited, ReadinessCheck, Upstream, tool_result_label

__all__ = [
    "CallContext",
    "JsonFormatter",
    "LogFormat",
    "MemoryLimiter",
    "Metrics",
    "Observer",
    "Rate",
    "RateLimited",
    "ReadinessCheck",
    "RedactingFormatter",
    "RedisLimiter",
    "StreamSlotsBusy",
    "Upstream",
    "add_readiness_checks",
    "add_routes",
    "current_call",
    "key_id",
    "log_formatter",
    "readiness_problems",
    "tool_result_label",
    "warn_about_redis",
]
