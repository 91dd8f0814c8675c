"""`POST /webhooks/lexey`: Lexey's signed webhooks, as a Starlette endpoint (on the MCP HTTP app) and as a
small standalone listener (stdio mode, `--webhook-port`).

The signature is the only authentication (Lexey cannot send the MCP bearer token): `X-Lexey-Signature:
sha256=<hex HMAC-SHA256(secret, raw body)>`, compared in constant time before the body is parsed. Nothing is
read past `MAX_BODY_BYTES`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .model import Event, EventShapeError, parse_event
from .store import EventStoreUnavailable

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger("lexey_mcp.events")

WEBHOOK_PATH = "/webhooks/lexey"
SIGNATURE_HEADER = "x-lexey-signature"
SIGNATURE_PREFIX = "sha256="
MAX_BODY_BYTES = 1024 * 1024


def sign(secret: str, body: bytes) -> str:
    """The `X-Lexey-Signature` value for `body`."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of an `X-Lexey-Signature` header against `body`."""
    if header is None:
        return False
    return hmac.compare_digest(header.strip().lower().encode(), sign(secret, body).encode())


def _answer(status: int, message: str | None = None) -> JSONResponse:
    return JSONResponse({"ok": True} if message is None else {"ok": False, "error": message}, status_code=status)


async def _read_capped(request: Request) -> bytes | None:
    """The body, or None once it passes MAX_BODY_BYTES (nothing more is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


Record = Callable[[Event], Awaitable[bool]]


class WebhookReceiver:
    """The endpoint. `secret` None: the route answers 404 (the receiver is off). `record` keeps an event and
    announces it (True when new); an `EventStoreUnavailable` from it is a 503, which Lexey retries."""

    def __init__(self, secret: str | None, record: Record) -> None:
        self._secret = secret
        self._record = record

    @property
    def enabled(self) -> bool:
        return self._secret is not None

    async def handle(self, request: Request) -> Response:
        if self._secret is None:
            return _answer(404, "not found: the webhook receiver is off (LEXEY_WEBHOOK_SECRET is not set)")
        header = request.headers.get(SIGNATURE_HEADER)
        if header is None or not header.strip().startswith(SIGNATURE_PREFIX):
            return _answer(401, "missing or malformed X-Lexey-Signature (expected sha256=<hex>)")
        body = await _read_capped(request)
        if body is None:
            return _answer(413, f"body over {MAX_BODY_BYTES} bytes")
        if not signature_ok(self._secret, body, header):
            logger.warning("webhook refused: the signature does not match (check LEXEY_WEBHOOK_SECRET)")
            return _answer(401, "signature does not match")
        try:
            event = parse_event(json.loads(body), time.time())
        except (ValueError, EventShapeError) as exc:
            message = str(exc) if isinstance(exc, EventShapeError) else "the body is not JSON"
            return _answer(400, message)
        try:
            added = await self._record(event)
        except EventStoreUnavailable as exc:
            logger.error("webhook %s not kept: %s", event.type, exc)
            return _answer(503, "the event store is unavailable; retry later")
        logger.info("webhook %s for %s %s", event.type, event.conversation_id, "kept" if added else "(redelivery)")
        return _answer(200)


def webhook_app(receiver: WebhookReceiver) -> Any:
    """A Starlette app serving only `POST /webhooks/lexey` (everything else 404/405)."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    return Starlette(routes=[Route(WEBHOOK_PATH, receiver.handle, methods=["POST"])])


def _uvicorn_server(config: uvicorn.Config, stop: anyio.Event) -> uvicorn.Server:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:  # the host process owns the signals
            yield

        async def main_loop(self) -> None:  # an event, not uvicorn's 100 ms polling of should_exit
            await stop.wait()

    return Server(config)


async def serve_listener(
    receiver: WebhookReceiver, host: str, port: int, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Serve the receiver alone on host:port (0: a free port) until cancelled; `task_status` gets its URL."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        webhook_app(receiver),
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="none",
        server_header=False,
        timeout_graceful_shutdown=1,
    )
    stop, ended = anyio.Event(), anyio.Event()
    server = _uvicorn_server(config, stop)

    async def run() -> None:
        try:
            with anyio.CancelScope(shield=True):  # stopped by should_exit, so the socket and connections close
                await server.serve([sock])
        finally:
            ended.set()

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        while not server.started and not ended.is_set():  # noqa: ASYNC110 - uvicorn says so with a flag only
            await anyio.sleep(0.01)
        if not server.started:
            raise OSError(f"the webhook listener on {host}:{bound} did not start")
        name = f"[{host}]" if ":" in host else host
        task_status.started(f"http://{name}:{bound}{WEBHOOK_PATH}")
        try:
            await anyio.sleep_forever()
        finally:
            server.should_exit = True
            stop.set()
