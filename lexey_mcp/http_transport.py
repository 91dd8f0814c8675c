"""Serving streamable HTTP with uvicorn, configured for exposure.

Connections go through the accept path every listener shares (`header_timeout`: a header timeout, idle connections
giving way to new ones, descriptor exhaustion handled). Then: at most LEXEY_MCP_MAX_CONCURRENCY requests in flight,
a keep-alive limit, and on `/mcp`, behind authentication, bodies read with size and time limits before the SDK sees
them (`McpRequests`). On a loopback bind, the SDK's DNS-rebinding guard allows only the names of that address.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import logging
import socket
from collections.abc import Mapping
from typing import Any

import anyio
import pydantic_core
from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecuritySettings
from mcp.types import INVALID_REQUEST, PARSE_ERROR
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import compat, interrupt, step_up
from .addresses import bind_address, is_loopback
from .config import Settings
from .header_timeout import ACCEPT_LOG_INTERVAL, accept_path
from .observability.logs import ThrottledLog
from .paths import MCP_PATH
from .server.tools import TOOLSET_OF
from .serving import uvicorn_server

logger = logging.getLogger("lexey_mcp.http")

#: A request body, however slowly it trickles in, must arrive within this many seconds (then 408).
BODY_SECONDS = 10.0
#: Seconds a Ctrl-C or SIGTERM leaves open requests to finish in, before they are cancelled.
SHUTDOWN_GRACE = 1


def _host_names(host: str) -> list[str]:
    """Every `Host` spelling (without port) that names a loopback bind address."""
    host = bind_address(host)
    if host == "localhost":
        return ["localhost", "127.0.0.1", "[::1]"]
    address = ipaddress.ip_address(host)
    if address.version == 6:
        names = [f"[{address.compressed}]", f"[{address.exploded}]", f"[{host}]"]
    else:
        names = [str(address)]
    if str(address) in ("127.0.0.1", "::1"):
        names.append("localhost")
    return list(dict.fromkeys(names))


def transport_security(host: str) -> TransportSecuritySettings | None:
    """On a loopback bind, the rebinding guard allowing only the names of that address (any port: a proxy in
    front may name its own); None elsewhere (a non-loopback bind needs the bearer token, and its Host is whatever
    name clients use)."""
    if not is_loopback(host):
        return None
    names = _host_names(host)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:*" for name in names],
        allowed_origins=[f"http://{name}:*" for name in names],
    )


class McpRequests:
    """ASGI middleware around the `/mcp` endpoint, inside authentication (nothing reaches it without a valid token,
    where one is required). A POST body is read whole before the SDK sees it: within `max_body` bytes (else 413) and
    `body_seconds` (else 408); a body that is not JSON, or nested past the parser's limit, is answered 400 (the SDK's
    own parse error), and a tool call or resource read outside the token's scopes 403 (`step_up`). Within a session,
    a request reusing the JSON-RPC id of one still in flight is answered with an error (409): the SDK would overwrite
    the first request's response stream, and the first would never be answered."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        toolset_of: Mapping[str, str] | None,
        resource_metadata: str | None,
        max_body: int = DEFAULT_MAX_REQUEST_BODY_SIZE,
        body_seconds: float = BODY_SECONDS,
    ) -> None:
        self._app = app
        self._toolset_of = toolset_of
        self._resource_metadata = resource_metadata
        self._max_body = max_body
        self._body_seconds = body_seconds
        self._in_flight: set[tuple[str, str]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        try:
            message = pydantic_core.from_json(body)
        except ValueError as exc:  # junk, or nested too deeply: the parser's limit is an error like any other
            await _send_json(send, 400, _error(None, PARSE_ERROR, f"Parse error: {exc}"))
            return
        needed = None if self._toolset_of is None else step_up.missing_scope(scope, message, self._toolset_of)
        if needed is not None:
            await step_up.refuse(send, needed, self._resource_metadata)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        session = _header(scope, b"mcp-session-id")
        request_id = _request_id(message)
        key = (session or "", str(request_id))  # the SDK's own key: 1 and "1" are the same request
        if session is None or request_id is None:
            await self._app(scope, replay, send)
        elif key in self._in_flight:
            await _send_json(send, 409, _duplicate(request_id))
        else:
            self._in_flight.add(key)
            try:
                await self._app(scope, replay, send)
            finally:
                self._in_flight.discard(key)

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None once it has been refused (too large, too slow) or the client went away."""
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            await _send_json(send, 413, _error(None, INVALID_REQUEST, f"The body is over {self._max_body} bytes."))
            return None
        chunks: list[bytes] = []
        size = 0
        with anyio.move_on_after(self._body_seconds):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return None  # disconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self._max_body:
                    await _send_json(
                        send, 413, _error(None, INVALID_REQUEST, f"The body is over {self._max_body} bytes.")
                    )
                    return None
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
        await _send_json(
            send, 408, _error(None, INVALID_REQUEST, f"The body did not arrive within {self._body_seconds:g} seconds.")
        )
        return None


class RequestsInFlight:
    """ASGI middleware: at most `limit` HTTP requests served at once (an open SSE stream is one); a request beyond
    gets 503, logged at most once per `ACCEPT_LOG_INTERVAL`. Counting requests, not connections: idle connections
    give way to new ones (`header_timeout`), so they never stand in for requests."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._limit = limit
        self._active = 0
        self._log = ThrottledLog(logger, ACCEPT_LOG_INTERVAL)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if self._active >= self._limit:
            self._log.log(
                logging.WARNING, "refused a request: %d requests in flight (LEXEY_MCP_MAX_CONCURRENCY)", self._active
            )
            body = b"Service Unavailable: too many requests in flight; retry shortly."
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 503, "headers": [*headers, (b"retry-after", b"1")]})
            await send({"type": "http.response.body", "body": body})
            return
        self._active += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self._active -= 1


def guard_mcp_endpoint(app: Starlette, settings: Settings, path: str = MCP_PATH) -> None:
    """Put `McpRequests` around the endpoint at `path`, inside the SDK's authentication when there is one, and let its
    idle sessions give way to new ones (`make_room_for_sessions`)."""
    metadata, toolset_of = None, None  # no OAuth, no scopes to step up to
    if settings.oauth_issuer is not None and settings.resource_url is not None:
        metadata = str(build_resource_metadata_url(AnyHttpUrl(settings.resource_url)))
        toolset_of = TOOLSET_OF
    for route in app.router.routes:
        if isinstance(route, Route) and route.path == path:
            holder: Any = route.app if isinstance(route.app, RequireAuthMiddleware) else route
            if isinstance(holder.app, StreamableHTTPASGIApp):
                make_room_for_sessions(holder.app.session_manager)
            holder.app = McpRequests(holder.app, toolset_of=toolset_of, resource_metadata=metadata)
            return
    raise ValueError(f"no route {path} to guard")


def make_room_for_sessions(manager: StreamableHTTPSessionManager) -> None:
    """At the session cap, the least recently used idle session (no request in flight, no open stream) is closed for
    a new one: the caller's own first, where the caller has an identity, else anyone's. Without this the SDK answers
    503 to every new client for as long as the open sessions idle (10,000 of them, for 10 minutes).

    The SDK has no hook for this: `compat` reaches into the manager (`before_session_admission`)."""

    def make_room(requestor: object | None) -> None:
        if manager.max_sessions is None or compat.open_sessions(manager) < manager.max_sessions:
            return
        idle = compat.idle_sessions(manager)
        own = [session for session in idle if requestor is not None and session.owner == requestor]
        candidates = own or idle
        if candidates:
            oldest = min(candidates, key=lambda session: session.idle_scope.deadline)
            logger.info("closing the least recently used idle session to open a new one (session cap reached)")
            compat.forget_session(manager, oldest.session_id)  # room now; its server task ends and terminates it
            oldest.idle_scope.cancel()

    compat.before_session_admission(manager, make_room)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _request_id(message: object) -> int | str | None:
    """The id of a JSON-RPC request; None for anything else (notifications, responses, batches)."""
    request_id = message.get("id") if isinstance(message, dict) and "method" in message else None
    return request_id if isinstance(request_id, int | str) else None


def _error(request_id: int | str | None, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def _duplicate(request_id: int | str) -> dict[str, Any]:
    message = f"Request id {request_id} is already in use by a request in flight: use a new id for each request."
    return _error(request_id, INVALID_REQUEST, message)


async def _send_json(send: Send, status: int, content: dict[str, Any]) -> None:
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(app: Starlette, sockets: list[socket.socket], settings: Settings) -> int:
    """Serve `app` (the SDK's streamable HTTP app) on `sockets` (`listeners.listen`) until Ctrl-C or SIGTERM, which
    end the process with status 128 + the signal's number once the server has shut down."""
    guard_mcp_endpoint(app, settings)
    server = uvicorn_server(
        RequestsInFlight(app, settings.max_concurrency),
        grace=SHUTDOWN_GRACE,
        accepting=accept_path.accepting(settings.header_timeout, settings.max_concurrency),
        on_signal=interrupt.first_signal,
        lifespan="on",
        # Not uvloop, even where it is installed: libuv answers running out of file descriptors by accepting and
        # closing the next connection itself, so `AcceptFailures` never hears of it and a slow-header flood
        # locks clients out (tests/hardening/test_exposure.py fails on uvloop).
        loop="asyncio",
        limit_concurrency=None,  # RequestsInFlight: uvicorn's limit counts idle connections too
        timeout_keep_alive=settings.keep_alive,
    )
    # What exists now (modules, the tools' models and schemas: ~90,000 objects) lives as long as the process: out
    # of the collector's sight, each collection of what many calls at once leave behind costs less (~15 % of the
    # server's CPU per call, 200 at once: BENCHMARKS.md, capacity).
    gc.collect()  # what start-up left for the collector is freed now, not frozen for good
    gc.freeze()
    server.run(sockets)
    if server.stopped_by is not None:
        interrupt.exit_stopped(server.stopped_by)
    return 0
