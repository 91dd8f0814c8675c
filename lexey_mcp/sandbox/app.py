"""HTTP routes of the simulated APIs (customer, management, Lexi) and the `/_sandbox` admin endpoints."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import lexi
from .agents import CustomerAgent, ManagementAgent
from .config import LEXI_MAX_MESSAGE_CHARS
from .faults import Fault, RouteKind, chat_error_message, html_page, lexi_error, plan_stream, wrong_key_message
from .responses import RAW_SEND, SSEStream
from .store import ChatKind, Conversation, IdempotentReply, Store, now
from .store import Message as StoredMessage
from .webhooks import WebhookSender, escalated_payload
from .wire import Frame, dumps, words

logger = logging.getLogger("lexey_mcp.sandbox")

CHAT_PREFIX = "/api/v1"
LEXI_PREFIX = "/functions/v1/api-gateway"
LEXI_STREAM = f"{LEXI_PREFIX}/v1/lexi/chat/stream"
ADMIN_PREFIX = "/_sandbox"
_KEY_TYPES = {"lxc_": "customer", "lxm_": "management", "wbk_": "lexi"}
_CONTEXT_KEYS = ("contact_id", "deal_id", "matter_id", "company_id", "page")
_FAULTS = TypeAdapter(Fault | list[Fault])
CHAT_STREAM_ERROR = "The assistant hit an internal error while generating this response"
LEXI_STREAM_ERROR = "Lexi hit an internal error while generating this response"


def key_type(key: str | None) -> str | None:
    if key is None:
        return None
    return next((kind for prefix, kind in _KEY_TYPES.items() if key.startswith(prefix)), "unknown")


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


def _json(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        dumps(payload).encode(), status_code=status, headers={"content-type": "application/json", **(headers or {})}
    )


def chat_error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def lexi_error_response(status: int, code: str, message: str, headers: dict[str, str]) -> Response:
    return _json({"error": {"code": code, "message": message}}, status, headers)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


class _Front:
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


class SandboxApp:
    """The route handlers, bound to one store."""

    def __init__(self, store: Store, webhooks: WebhookSender | None = None) -> None:
        self.store = store
        self.webhooks = webhooks
        self.config = store.config
        self.management = ManagementAgent(store)
        self.customer = CustomerAgent(store)

    def asgi(self) -> ASGIApp:
        chat = CHAT_PREFIX + "/{kind}/conversations"
        routes = [
            Route(chat, self.create_conversation, methods=["POST"]),
            Route(chat + "/{conversation_id}/messages", self.send_message, methods=["POST"]),
            Route(chat + "/{conversation_id}/messages", self.history, methods=["GET"]),
            Route(LEXI_STREAM, self.lexi_stream, methods=["POST"]),
            Route(ADMIN_PREFIX + "/stats", self.admin_stats, methods=["GET"]),
            Route(ADMIN_PREFIX + "/faults", self.admin_list_faults, methods=["GET"]),
            Route(ADMIN_PREFIX + "/faults", self.admin_add_faults, methods=["POST"]),
            Route(ADMIN_PREFIX + "/faults", self.admin_clear_faults, methods=["DELETE"]),
        ]
        app = Starlette(
            routes=routes,
            exception_handlers={HTTPException: self._http_error, Exception: self._crash},
        )
        return _Front(app, self.store)

    # errors outside the handlers
    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = "Not found" if status == 404 else "Method not allowed" if status == 405 else f"HTTP error {status}"
        if request.url.path.startswith(LEXI_PREFIX):
            code = "not_found" if status == 404 else "method_not_allowed" if status == 405 else "http_error"
            return lexi_error_response(status, code, message, {})
        return chat_error(status, message)

    async def _crash(self, request: Request, exc: Exception) -> Response:
        logger.exception("sandbox handler failed")
        return chat_error(500, "Internal server error")

    # chat APIs
    def _chat_kind(self, request: Request) -> ChatKind:
        kind = request.path_params["kind"]
        if kind not in ("customer", "management"):
            raise HTTPException(404)
        return "customer" if kind == "customer" else "management"

    def _chat_auth(self, request: Request, kind: ChatKind) -> Response | None:
        """401 for a missing, unknown or non-Lexey key (wbk_ included); 403 for the other Lexey key type."""
        key = bearer(dict(request.headers))
        who = key_type(key)
        if key is None or who not in ("customer", "management"):
            return chat_error(401, "Missing or invalid API key")
        if self.config.keys is not None and key not in self.config.keys:
            return chat_error(401, "Missing or invalid API key")
        if who != kind:
            return chat_error(403, wrong_key_message(kind))
        return None

    async def create_conversation(self, request: Request) -> Response:
        kind = self._chat_kind(request)
        if denied := self._chat_auth(request, kind):
            return denied
        conversation = self.store.create_conversation(kind)
        return _json({"conversationId": conversation.id}, 201)

    def _conversation(self, request: Request, kind: ChatKind) -> Conversation | None:
        """The conversation named in the path, if it is a UUID this API knows."""
        conversation_id: str = request.path_params["conversation_id"]
        return self.store.find_conversation(kind, conversation_id) if _is_uuid(conversation_id) else None

    async def history(self, request: Request) -> Response:
        kind = self._chat_kind(request)
        if denied := self._chat_auth(request, kind):
            return denied
        conversation = self._conversation(request, kind)
        if conversation is None:
            return chat_error(404, "Conversation not found")
        return _json({"messages": [m.as_json() for m in conversation.messages]})

    async def send_message(self, request: Request) -> Any:
        kind = self._chat_kind(request)
        fault = self._take_fault(kind)
        if fault is not None and fault.status is not None:
            return self._fault_response(kind, fault, {})
        if fault is not None and fault.raw_chunks is not None:
            return self._stream([], kind, fault, {})
        if denied := self._chat_auth(request, kind):
            return denied
        conversation = self._conversation(request, kind)
        if conversation is None:
            return chat_error(404, "Conversation not found")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return chat_error(400, "Request body must be JSON")
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message.strip():
            return chat_error(400, "message is required")
        if len(message) > self.config.max_message_chars:
            return chat_error(400, f"Message too long (max {self.config.max_message_chars} characters)")
        if conversation.user_messages >= self.config.message_limit:
            return chat_error(429, "Conversation message limit reached")
        if not self.store.charge_lexey():
            return chat_error(402, "No active subscription or credits exhausted")

        moment = now()
        conversation.messages.append(StoredMessage("user", message, moment))
        if kind == "customer":
            reply = self.customer.respond(conversation, message, moment)
        else:
            reply = self.management.respond(message, moment)
        conversation.messages.append(StoredMessage("assistant", reply.text, now()))
        if reply.escalation_reason is not None and self.webhooks is not None:
            customer = f"visitor-{conversation.id[:8]}"  # the sandbox knows no customer identity
            self.webhooks.send(escalated_payload(conversation, reply.escalation_reason, customer))
        events = [Frame(dumps({"type": "delta", "text": w})) for w in words(reply.text)]
        events += [Frame(dumps({"type": "status", "status": s})) for s in reply.statuses]
        return self._stream(events, kind, fault, {})

    # Lexi
    def _rate_headers(self, *, consume: bool = False, exhausted: bool = False) -> dict[str, str]:
        limit, remaining, reset = self.store.rate_limit(consume=consume)
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": "0" if exhausted else str(remaining),
            "x-ratelimit-reset": str(reset),
        }

    async def lexi_stream(self, request: Request) -> Any:
        fault = self._take_fault("lexi")
        if fault is not None and fault.status is not None:
            return self._fault_response("lexi", fault, self._rate_headers(exhausted=fault.status == 429))
        if fault is not None and fault.raw_chunks is not None:
            return self._stream([], "lexi", fault, self._rate_headers())
        key = bearer(dict(request.headers))
        if key is None or not key.startswith("wbk_") or (self.config.keys is not None and key not in self.config.keys):
            return lexi_error_response(401, "invalid_key", "Invalid or expired API key", self._rate_headers())
        if "noperm" in key:
            return lexi_error_response(
                403, "insufficient_permissions", "Missing write:ai permission", self._rate_headers()
            )
        if self.store.rate_limited():
            headers = self._rate_headers()
            headers["retry-after"] = str(max(1, int(headers["x-ratelimit-reset"]) - int(time.time())))
            return lexi_error_response(429, "rate_limited", "Daily rate limit exceeded", headers)
        headers = self._rate_headers(consume=True)

        def invalid(message: str) -> Response:
            return lexi_error_response(400, "validation_error", message, headers)

        try:
            body = json.loads(await request.body())
        except ValueError:
            return invalid("Request body must be JSON")
        if not isinstance(body, dict):
            return invalid("Request body must be a JSON object")
        message = body.get("message")
        if not isinstance(message, str) or not message.strip():
            return invalid("message is required")
        if len(message) > LEXI_MAX_MESSAGE_CHARS:
            return invalid(f"message exceeds {LEXI_MAX_MESSAGE_CHARS:,} characters")
        conversation_id = body.get("conversation_id")
        if conversation_id is not None and not (isinstance(conversation_id, str) and _is_uuid(conversation_id)):
            return invalid("conversation_id must be a UUID")
        raw_context = body.get("context") or {}
        if not isinstance(raw_context, dict) or not all(
            isinstance(raw_context.get(k), str | None) for k in _CONTEXT_KEYS
        ):
            return invalid("context must be an object of strings")
        context = {k: v for k, v in raw_context.items() if k in _CONTEXT_KEYS and isinstance(v, str)}
        allow_tools = body.get("allow_tools", True)
        if not isinstance(allow_tools, bool):
            return invalid("allow_tools must be a boolean")
        idempotency_key = request.headers.get("idempotency-key")
        if idempotency_key is not None and not _is_uuid(idempotency_key):
            return invalid("Idempotency-Key must be a UUID")

        fingerprint = dumps([message, conversation_id, context, allow_tools])
        replay = self.store.idempotent_reply(idempotency_key) if idempotency_key else None
        if replay is not None:
            if replay.fingerprint != fingerprint:
                return invalid("Idempotency-Key was already used with a different request")
            return self._stream(replay.events, "lexi", fault, headers)

        existing = None
        if conversation_id is not None:
            existing = self.store.lexi_conversations.get(conversation_id.lower())
            if existing is None:
                return lexi_error_response(
                    404, "conversation_not_found", "Supplied conversation_id does not exist", headers
                )
        result = lexi.answer(message, context, allow_tools=allow_tools, history=existing.messages if existing else [])
        if not self.store.charge_lexi(result.cost):
            return lexi_error_response(402, "insufficient_credits", "Workspace credit balance is exhausted", headers)
        conversation = existing or self.store.new_lexi_conversation()
        moment = now()
        conversation.messages += [
            StoredMessage("user", message, moment),
            StoredMessage("assistant", result.text, moment),
        ]
        events = [Frame(dumps({"text": t}), event="thinking") for t in result.thinking]
        for call in result.tools:
            events.append(Frame(dumps({"tool": call.tool, "status": "started"}), event="tool_step"))
            events.append(
                Frame(dumps({"tool": call.tool, "status": "completed", "summary": call.summary}), event="tool_step")
            )
        events += [
            Frame(dumps({"delta": w, "conversation_id": conversation.id}), event="text") for w in words(result.text)
        ]
        done = {"credits_remaining": self.store.lexi_balance(), "message_id": self.store.new_message_id()}
        events.append(Frame(dumps(done), event="done"))
        if idempotency_key:
            self.store.idempotency[idempotency_key] = IdempotentReply(fingerprint, time.time(), events)
        return self._stream(events, "lexi", fault, headers)

    # faults
    def _take_fault(self, kind: RouteKind) -> Fault | None:
        fault = self.store.faults.take(kind)
        if fault is not None:
            self.store.stats.faults_applied += 1
            logger.debug("applying fault to %s: %s", kind, fault.model_dump(exclude_defaults=True))
        return fault

    def _fault_response(self, api: RouteKind, fault: Fault, headers: dict[str, str]) -> Response:
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

    def _stream(self, events: list[Frame], api: RouteKind, fault: Fault | None, headers: dict[str, str]) -> SSEStream:
        if api == "lexi":
            error = Frame(dumps({"code": "internal_error", "message": LEXI_STREAM_ERROR}), event="error")
        else:
            error = Frame(dumps({"type": "error", "message": CHAT_STREAM_ERROR}))
        plan = plan_stream(events, error=error, numbered=api != "lexi", delay=self.config.delay, fault=fault)
        return SSEStream(self.store, plan, headers=headers, content_type=fault.content_type if fault else None)

    # admin
    async def admin_stats(self, request: Request) -> Response:
        return _json(
            {
                **self.store.stats.as_dict(),
                "faults_pending": len(self.store.faults),
                "last_headers": {kind: redact(h) for kind, h in self.store.last_headers.items()},
                "requests_log": [list(r) for r in self.store.requests_log],
            }
        )

    async def admin_list_faults(self, request: Request) -> Response:
        pending = [
            {**fault.model_dump(mode="json", exclude_defaults=True, exclude_none=True), "remaining": left}
            for fault, left in self.store.faults.pending()
        ]
        return _json({"faults": pending})

    async def admin_add_faults(self, request: Request) -> Response:
        try:
            parsed = _FAULTS.validate_json(await request.body())
        except ValidationError as exc:
            details = json.loads(exc.json(include_url=False, include_input=False))
            return _json({"error": "Invalid fault", "details": details}, 400)
        faults = parsed if isinstance(parsed, list) else [parsed]
        for fault in faults:
            self.store.faults.push(fault)
        return _json({"queued": len(faults), "pending": len(self.store.faults)}, 201)

    async def admin_clear_faults(self, request: Request) -> Response:
        return _json({"cleared": self.store.faults.clear()})
