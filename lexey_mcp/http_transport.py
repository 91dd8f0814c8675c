"""Serving streamable HTTP with uvicorn, configured for exposure.

uvicorn alone waits forever for a request's headers, so a few hundred connections that never finish them use up
the process's file descriptors; asyncio then logs every failed accept (thousands of lines a second). Here:
a header timeout, a concurrency limit, a keep-alive limit, the descriptor limit raised to its hard limit, and when
descriptors run out anyway, the oldest connections still waiting for headers closed to make room and the
accept-failure log rate-limited. On a loopback bind, the SDK's DNS-rebinding guard allows only the names of that
address.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import logging
import signal
import socket
import time
from collections.abc import Generator
from types import FrameType
from typing import Any

import uvicorn
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecuritySettings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import interrupt
from .addresses import bind_address, is_loopback
from .config import Settings
from .header_timeout import WaitingForHeaders, header_timeout_protocol

logger = logging.getLogger("lexey_mcp.http")

#: At most one accept-failure line per this many seconds (the rest are counted in the next line).
ACCEPT_LOG_INTERVAL = 5.0
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


class AcceptFailures:
    """An event-loop exception handler for accept failures (EMFILE, ENFILE, ENOBUFS, ENOMEM): each closes the oldest
    connection still waiting for its headers, and they are logged at most once per `interval`, with a count of those
    not shown. Everything else is handled as asyncio would."""

    def __init__(self, waiting: WaitingForHeaders, interval: float = ACCEPT_LOG_INTERVAL) -> None:
        self._waiting = waiting
        self._interval = interval
        self._last = float("-inf")
        self._suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            loop.default_exception_handler(context)
            return
        self._waiting.close_oldest()
        now = time.monotonic()
        if now - self._last < self._interval:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        logger.error("cannot accept connections: %s%s", context.get("exception"), more)
        self._last, self._suppressed = now, 0


def raise_fd_limit() -> None:
    """Raise this process's open-file limit to its hard limit (many clients, each with a socket)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        logger.debug("could not raise the open-file limit from %d to %d", soft, hard)


class DuplicateRequestIds:
    """ASGI middleware: within a session, a request reusing the JSON-RPC id of one still in flight is answered with
    an error (409). The SDK would overwrite the first request's response stream, and the first would never be
    answered. Bodies over `max_body` bytes pass through untouched (the SDK refuses them)."""

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_REQUEST_BODY_SIZE) -> None:
        self._app = app
        self._max_body = max_body
        self._in_flight: set[tuple[str, str]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = _header(scope, b"mcp-session-id") if scope["type"] == "http" and scope["method"] == "POST" else None
        if session is None:
            await self._app(scope, receive, send)
            return
        received: list[Message] = []
        size, more = 0, True
        while more and size <= self._max_body:
            message = await receive()
            received.append(message)
            size += len(message.get("body", b""))
            more = message["type"] == "http.request" and message.get("more_body", False)
        request_id = None if more else _request_id(b"".join(m.get("body", b"") for m in received))
        key = (session, str(request_id))  # the SDK's own key: 1 and "1" are the same request

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        if request_id is None:
            await self._app(scope, replay, send)
        elif key in self._in_flight:
            await _refuse_duplicate(request_id, send)
        else:
            self._in_flight.add(key)
            try:
                await self._app(scope, replay, send)
            finally:
                self._in_flight.discard(key)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _request_id(body: bytes) -> int | str | None:
    """The id of a JSON-RPC request; None for anything else (notifications, responses, batches, junk)."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    request_id = message.get("id") if isinstance(message, dict) and "method" in message else None
    return request_id if isinstance(request_id, int | str) else None


async def _refuse_duplicate(request_id: int | str, send: Send) -> None:
    message = f"Request id {request_id} is already in use by a request in flight: use a new id for each request."
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32600, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 409, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, waiting: WaitingForHeaders) -> None:
        super().__init__(config)
        self._waiting = waiting
        #: The signal that stopped the server, if one did.
        self.stopped_by: int | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(AcceptFailures(self._waiting))
        await super().startup(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn's, without raising the signal again once it has shut down: the process exits with its status."""
        previous = {signum: signal.signal(signum, self.handle_exit) for signum in interrupt.SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Only the first: on a second, uvicorn would skip the lifespan's shutdown (the sandbox's temporary directory).
        if interrupt.first_signal(sig):
            self.stopped_by = sig
            super().handle_exit(sig, frame)


def serve(app: ASGIApp, sockets: list[socket.socket], settings: Settings) -> int:
    """Serve `app` on `sockets` (`listeners.listen`) until Ctrl-C or SIGTERM; the exit status: 128 + the signal's
    number."""
    raise_fd_limit()
    waiting = WaitingForHeaders()
    config = uvicorn.Config(
        DuplicateRequestIds(app),
        log_config=None,
        lifespan="on",
        # Not uvloop, even where it is installed: libuv answers running out of file descriptors by accepting and
        # closing the next connection itself, so `AcceptFailures` never hears of it and a slow-header flood
        # locks clients out (tests/hardening/test_exposure.py fails on uvloop).
        loop="asyncio",
        http=header_timeout_protocol(settings.header_timeout, waiting),
        ws="none",
        limit_concurrency=settings.max_concurrency,
        timeout_keep_alive=settings.keep_alive,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
    )
    # What exists now (modules, the tools' models and schemas: ~90,000 objects) lives as long as the process: out
    # of the collector's sight, each collection of what many calls at once leave behind costs less (~15 % of the
    # server's CPU per call, 200 at once: BENCHMARKS.md, capacity).
    gc.collect()  # what start-up left for the collector is freed now, not frozen for good
    gc.freeze()
    server = _Server(config, waiting)
    server.run(sockets)
    return interrupt.status(server.stopped_by) if server.stopped_by is not None else 0
