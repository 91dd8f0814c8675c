"""`POST /webhooks/lexey`: Lexey's signed webhooks, as a Starlette endpoint (on the MCP HTTP app) and as a
small standalone listener (stdio mode, `--webhook-port`).

The signature is the only authentication (Lexey cannot send the MCP bearer token): `X-Lexey-Signature:
sha256=<hex HMAC-SHA256(secret, raw body)>`, compared in constant time before the body is parsed. Nothing is
read past `MAX_BODY_BYTES`, a body must arrive within `BODY_SECONDS`, and bodies being read hold at most
`MAX_BUFFERED_BYTES` between them: the body comes before its signature can be checked, so anyone who can reach the
route can send one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..header_timeout import accept_path
from ..listeners import listen
from ..observability.logs import ThrottledLog
from ..paths import WEBHOOK_PATH
from ..serving import serving, uvicorn_server
from .model import Event, EventShapeError, parse_event
from .store import EventStoreUnavailable

logger = logging.getLogger("lexey_mcp.events")

SIGNATURE_HEADER = "x-lexey-signature"
SIGNATURE_PREFIX = "sha256="
MAX_BODY_BYTES = 1024 * 1024
#: A whole body, however slowly it trickles in (Lexey's are a few KiB, sent at once); then 408.
BODY_SECONDS = 10.0
#: Bytes held by all bodies being read at once (64 full ones); past it, 503 (Lexey retries): what a flood of large,
#: slow bodies can hold in memory.
MAX_BUFFERED_BYTES = 64 * MAX_BODY_BYTES
#: At most one "signature does not match" line per this many seconds (anyone can send those).
REFUSAL_LOG_SECONDS = 60.0
#: Seconds the standalone listener leaves requests in flight to finish in when it stops.
SHUTDOWN_GRACE = 1.0


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


Record = Callable[[Event], Awaitable[bool]]


class WebhookReceiver:
    """The endpoint. `secret` None: the route answers 404 (the receiver is off). `record` keeps an event and
    announces it (True when new); an `EventStoreUnavailable` from it is a 503, which Lexey retries."""

    def __init__(
        self,
        secret: str | None,
        record: Record,
        *,
        body_seconds: float = BODY_SECONDS,
        max_buffered: int = MAX_BUFFERED_BYTES,
    ) -> None:
        self._secret = secret
        self._record = record
        self._body_seconds = body_seconds
        self._max_buffered = max_buffered
        self._buffered = 0
        self._refusals = ThrottledLog(logger, REFUSAL_LOG_SECONDS)
        #: Counts each delivery by a fixed word (`Observer.webhook_received`, lexey_mcp_webhooks_received_total).
        self.count: Callable[[str], None] = lambda result: None

    @property
    def enabled(self) -> bool:
        return self._secret is not None

    async def _read_body(self, request: Request) -> bytes | Response:
        """The body, or the refusal once it is too big (413), too slow (408), or too much is being read (503)."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _answer(413, f"body over {MAX_BODY_BYTES} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            with anyio.move_on_after(self._body_seconds):
                async for chunk in request.stream():
                    size += len(chunk)
                    self._buffered += len(chunk)
                    if size > MAX_BODY_BYTES:
                        return _answer(413, f"body over {MAX_BODY_BYTES} bytes")
                    if self._buffered > self._max_buffered:
                        return _answer(503, "too many webhooks arriving at once; retry later")
                    chunks.append(chunk)
                return b"".join(chunks)
        finally:
            self._buffered -= size
        return _answer(408, f"the body did not arrive within {self._body_seconds:g} seconds")

    async def handle(self, request: Request) -> Response:
        result, response = await self._handle(request)
        self.count(result)
        return response

    async def _handle(self, request: Request) -> tuple[str, Response]:
        """The delivery's result (a fixed word, for the metric) and the answer."""
        if self._secret is None:
            return "off", _answer(404, "not found: the webhook receiver is off (LEXEY_WEBHOOK_SECRET is not set)")
        header = request.headers.get(SIGNATURE_HEADER)
        if header is None or not header.strip().startswith(SIGNATURE_PREFIX):
            return "bad_signature", _answer(401, "missing or malformed X-Lexey-Signature (expected sha256=<hex>)")
        body = await self._read_body(request)
        if isinstance(body, Response):
            return {408: "too_slow", 413: "too_large"}.get(body.status_code, "busy"), body
        if not signature_ok(self._secret, body, header):
            self._refusals.log(
                logging.WARNING, "webhook refused: the signature does not match (check LEXEY_WEBHOOK_SECRET)"
            )
            return "bad_signature", _answer(401, "signature does not match")
        try:
            event = parse_event(json.loads(body), time.time())
        except EventShapeError as exc:
            return "malformed", _answer(400, str(exc))
        except ValueError:
            return "malformed", _answer(400, "the body is not JSON")
        except RecursionError:  # json's own limit on nesting, well past any real event's
            return "malformed", _answer(400, "the body is nested too deeply")
        try:
            added = await self._record(event)
        except EventStoreUnavailable as exc:
            logger.error("webhook %s not kept: %s", event.type, exc)
            return "unavailable", _answer(503, "the event store is unavailable; retry later")
        logger.info("webhook %s for %s %s", event.type, event.conversation_id, "kept" if added else "(redelivery)")
        return ("accepted" if added else "duplicate"), _answer(200)


def webhook_app(receiver: WebhookReceiver) -> Any:
    """A Starlette app serving only `POST /webhooks/lexey` (everything else 404/405)."""
    return Starlette(routes=[Route(WEBHOOK_PATH, receiver.handle, methods=["POST"])])


async def serve_listener(
    receiver: WebhookReceiver,
    host: str,
    port: int,
    header_timeout: float,
    max_connections: int,
    *,
    sockets: tuple[socket.socket, ...] | None = None,
    task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the receiver alone on host:port (0: a free port; `sockets`: host:port bound already) until cancelled;
    `task_status` gets its URL (`PortUnavailable` when the port cannot be had). Its connections take the accept path
    the HTTP transport's take (`header_timeout`): closed when their request headers are not complete within
    `header_timeout` seconds (LEXEY_MCP_HEADER_TIMEOUT), giving way to new ones past `max_connections`, descriptor
    exhaustion handled."""
    bound_sockets = list(sockets) if sockets is not None else listen(host, port, "the webhook receiver")
    bound = bound_sockets[0].getsockname()[1]
    server = uvicorn_server(
        webhook_app(receiver),
        grace=SHUTDOWN_GRACE,
        accepting=accept_path.accepting(header_timeout, max_connections),
        server_header=False,
        date_header=False,
    )
    async with serving(server, bound_sockets, f"the webhook listener on {host}:{bound}"):
        name = f"[{host}]" if ":" in host else host
        task_status.started(f"http://{name}:{bound}{WEBHOOK_PATH}")
        await anyio.sleep_forever()
