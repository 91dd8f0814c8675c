"""What every simulated API shares: keys, request ids and the request log, faults, and streaming a reply."""

from __future__ import annotations

import logging
import uuid

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..vendor import API
from .errors import CHAT_STREAM_ERROR, LEXI_STREAM_ERROR, chat_error_message, lexi_error
from .faults import Fault, RouteKind, html_page, plan_stream
from .responses import RAW_SEND, SSEStream
from .store import Store
from .wire import Frame, dumps

logger = logging.getLogger("lexey_mcp.sandbox")

CHAT_PREFIX = "/api/v1"
LEXI_PREFIX = "/functions/v1/api-gateway"
ADMIN_PREFIX = "/_sandbox"
KEY_TYPES: dict[str, RouteKind] = {facts.key_prefix: api for api, facts in API.items()}


def key_type(key: str | None) -> str | None:
    if key is None:
        return None
    return next((kind for prefix, kind in KEY_TYPES.items() if key.startswith(prefix)), "unknown")


def bearer(headers: dict[str, str]) -> str | None:
    scheme, _, key = headers.get("authorization", "").partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def route_kind(path: str) -> RouteKind | None:
    if path.startswith(f"{CHAT_PREFIX}/customer/"):
        return "customer"
    if path.startswith(f"{CHAT_PREFIX}/management/"):
        return "management"
    if path.startswith(f"{LEXI_PREFIX}/"):
        return "lexi"
    return None


def redact(headers: dict[str, str]) -> dict[str, str]:
    """Headers fit for an HTTP answer: the bearer key is shortened to its prefix."""
    shown = dict(headers)
    if "authorization" in shown:
        key = bearer(shown)
        shown["authorization"] = f"Bearer {key[:4]}…" if key else "(not a bearer token)"
    return shown


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


class Front:
    """Outermost ASGI layer: request ids, the request log, last headers per API, debug logging."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self._app = app
        self._store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = self._store.new_request_id()
        scope[RAW_SEND] = send
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        kind = route_kind(path)
        who = key_type(bearer(headers))
        if not path.startswith(ADMIN_PREFIX):
            self._store.record_request(scope["method"], path, who, kind, headers)
            self._store.record_key(scope["method"], path, bearer(headers), headers.get("idempotency-key"))
        status: list[int] = []

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            logger.debug(
                "%s %s -> %s key=%s request_id=%s", scope["method"], path, status[0] if status else "-", who, request_id
            )


class Streams:
    """Faults and reply streams, for the handlers of one API family."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.config = store.config

    def take_fault(self, kind: RouteKind) -> Fault | None:
        fault = self.store.faults.take(kind)
        if fault is not None:
            self.store.stats.faults_applied += 1
            logger.debug("applying fault to %s: %s", kind, fault.model_dump(exclude_defaults=True))
        return fault

    def fault_response(self, api: RouteKind, fault: Fault, headers: dict[str, str]) -> Response:
        status = fault.status or 500
        headers = dict(headers)
        if fault.retry_after is not None:
            headers["retry-after"] = fault.retry_after
        if fault.html_error:
            headers["content-type"] = fault.content_type or "text/html; charset=utf-8"
            return Response(html_page(status), status_code=status, headers=headers)
        if api == "lexi":
            code, message = lexi_error(status)
            body: object = {"error": {"code": code, "message": message}}
        else:
            body = {"error": chat_error_message(api, status)}
        headers["content-type"] = fault.content_type or "application/json"
        return Response(dumps(body).encode(), status_code=status, headers=headers)

    def stream(self, events: list[Frame], api: RouteKind, fault: Fault | None, headers: dict[str, str]) -> SSEStream:
        if api == "lexi":
            error = Frame(dumps({"code": "internal_error", "message": LEXI_STREAM_ERROR}), event="error")
        else:
            error = Frame(dumps({"type": "error", "message": CHAT_STREAM_ERROR}))
        plan = plan_stream(events, error=error, numbered=api != "lexi", delay=self.config.delay, fault=fault)
        return SSEStream(self.store, plan, headers=headers, content_type=fault.content_type if fault else None)
