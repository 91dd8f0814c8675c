"""`/healthz`, `/readyz` and `/metrics`: custom routes, outside the MCP bearer auth."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable
from typing import Any

import anyio
from mcp.server import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import __version__
from ..addresses import is_loopback
from ..config import KeyKind, Settings
from ..errors import LexeyError
from ..paths import HEALTH_PATH, METRICS_PATH, READY_PATH
from ..redis_connection import SharedRedis
from .observer import Observer

logger = logging.getLogger("lexey_mcp.observability")

#: The longest one readiness check may take.
CHECK_SECONDS = 2.0
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def add_readiness_checks(observer: Observer, settings: Settings, kinds: Iterable[KeyKind]) -> None:
    """The checks this module owns: keys (valid where set) and Redis (reachable when configured)."""
    enabled = list(kinds)

    async def keys() -> str | None:
        problems = [
            problem
            for kind in enabled
            if settings.configured_key(kind) is not None and (problem := settings.key_problem(kind)) is not None
        ]
        return " ".join(problems) or None

    observer.readiness["keys"] = keys
    if observer.shared_redis is not None:
        shared = observer.shared_redis

        async def redis() -> str | None:
            await shared.client().ping()
            return await redis_eviction_problem(shared)

        observer.readiness["redis"] = redis


async def redis_eviction_problem(shared: SharedRedis) -> str | None:
    """What is wrong with Redis's `maxmemory-policy` for this server, or None (also when Redis will not say: managed
    services often disable CONFIG). Any policy but noeviction lets Redis drop rate-limit counters, escalations and
    used confirmations when memory runs short, without a word."""
    from redis.exceptions import ResponseError  # lazy: redis-py is ~80 ms of cold start, used only with LEXEY_REDIS_URL

    try:
        policy = (await shared.client().config_get("maxmemory-policy")).get("maxmemory-policy")
    except ResponseError:
        return None
    if isinstance(policy, bytes):
        policy = policy.decode()
    if policy in (None, "noeviction"):
        return None
    return (
        f"its maxmemory-policy is {policy}: under memory pressure Redis drops rate-limit counters, escalations and "
        "used confirmations silently; set maxmemory-policy noeviction"
    )


async def warn_about_redis(observer: Observer) -> None:
    """At start: one warning line when Redis's eviction policy would lose what this server keeps there (an unreachable
    Redis is left to /readyz and the first use)."""
    if observer.shared_redis is None:
        return
    with anyio.move_on_after(CHECK_SECONDS):
        try:
            problem = await redis_eviction_problem(observer.shared_redis)
        except Exception:  # unreachable or refused: said where it matters, not here
            return
        if problem is not None:
            logger.warning("Redis: %s", problem)


async def readiness_problems(observer: Observer, per_check: float = CHECK_SECONDS) -> list[str]:
    """Every readiness check's problem, as "name: problem", in the order the checks were added."""
    problems: list[str] = []
    for name, check in observer.readiness.items():
        problem: str | None = f"no answer within {per_check:g} s"
        try:
            with anyio.move_on_after(per_check):
                problem = await check()
        except LexeyError as exc:
            problem = str(exc)
        except Exception as exc:  # a check that fails is a problem to report, not a 500
            problem = f"failed ({type(exc).__name__})"
        if problem:
            problems.append(f"{name}: {problem}")
    return problems


def add_routes(server: MCPServer[Any], observer: Observer, settings: Settings) -> None:
    """Register the three routes on an `MCPServer`."""
    token = settings.metrics_token.get_secret_value().encode() if settings.metrics_token else None

    @server.custom_route(HEALTH_PATH, methods=["GET"], include_in_schema=False)  # type: ignore[untyped-decorator]  # untyped in the SDK
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    @server.custom_route(READY_PATH, methods=["GET"], include_in_schema=False)  # type: ignore[untyped-decorator]  # untyped in the SDK
    async def readyz(request: Request) -> Response:
        problems = await readiness_problems(observer)
        return JSONResponse(
            {"status": "not ready" if problems else "ready", "problems": problems}, status_code=503 if problems else 200
        )

    @server.custom_route(METRICS_PATH, methods=["GET"], include_in_schema=False)  # type: ignore[untyped-decorator]  # untyped in the SDK
    async def metrics(request: Request) -> Response:
        if token is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
                return Response(
                    "Bearer token required (LEXEY_MCP_METRICS_TOKEN).\n",
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        else:
            local = request.scope.get("server")
            if not local or not is_loopback(str(local[0])):
                # Without a token, only a loopback listener serves metrics: say nothing about them elsewhere.
                return Response("Not Found\n", status_code=404)
        return Response(observer.metrics.exposition(), media_type=PROMETHEUS_TEXT)
