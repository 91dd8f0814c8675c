"""Operations: health and readiness routes, Prometheus metrics, OpenTelemetry spans, per-key rate limits,
the stream cap and log formats, a module each (`metrics`, `tracing`; admission: `rate_limits`, `stream_slots`),
put together by `observer`. Importable without the MCP server; prometheus-client loads on the first record.

    observer = Observer(settings)                      # per server
    server.middleware.append(observer.middleware(…))   # tool-call metrics, rate limit, log context
    async with observer.upstream(api, stream=True) as upstream:   # around one upstream request (client)
        response = await upstream.send(http, request)
        upstream.ended(result)
"""

from .logs import CallContext, JsonFormatter, LogFormat, RedactingFormatter, current_call, log_formatter
from .metrics import Metrics, tool_result_label
from .observer import Observer, ReadinessCheck
from .rate_limits import MemoryLimiter, Rate, RateLimited, RedisLimiter, key_id
from .routes import add_readiness_checks, add_routes, readiness_problems, warn_about_redis
from .stream_slots import StreamSlotsBusy
from .tracing import Upstream

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
