"""The Lexey customer and management chat APIs: same routes, different keys."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .agents import CustomerAgent, ManagementAgent
from .errors import MESSAGE_REQUIRED, NOT_JSON, chat_error, json_response, wrong_key_message
from .routing import CHAT_PREFIX, Streams, bearer, is_uuid, key_type
from .store import ChatKind, Conversation, Store, now
from .store import Message as StoredMessage
from .webhooks import WebhookSender, escalated_payload
from .wire import Frame, dumps, words


class ChatMessageBody(BaseModel):
    """POST …/messages. Strict: a number is not a message."""

    model_config = ConfigDict(strict=True, extra="ignore")

    message: str


class ChatAPI(Streams):
    def __init__(self, store: Store, webhooks: WebhookSender | None = None) -> None:
        super().__init__(store)
        self.webhooks = webhooks
        self.management = ManagementAgent(store)
        self.customer = CustomerAgent(store)

    def routes(self) -> list[Route]:
        chat = CHAT_PREFIX + "/{kind}/conversations"
        return [
            Route(chat, self.create_conversation, methods=["POST"]),
            Route(chat + "/{conversation_id}/messages", self.send_message, methods=["POST"]),
            Route(chat + "/{conversation_id}/messages", self.history, methods=["GET"]),
        ]

    def _kind(self, request: Request) -> ChatKind:
        kind = request.path_params["kind"]
        if kind not in ("customer", "management"):
            raise HTTPException(404)
        return "customer" if kind == "customer" else "management"

    def _auth(self, request: Request, kind: ChatKind) -> Response | None:
        """401 for a missing, unknown or non-Lexey key (wbk_ included); 403 for the other Lexey key type."""
        key = bearer(dict(request.headers))
        who = key_type(key)
        if key is None or who not in ("customer", "management"):
            return chat_error(401)
        if self.config.keys is not None and key not in self.config.keys:
            return chat_error(401)
        if who != kind:
            return chat_error(403, wrong_key_message(kind))
        return None

    async def create_conversation(self, request: Request) -> Response:
        kind = self._kind(request)
        if denied := self._auth(request, kind):
            return denied
        conversation = self.store.create_conversation(kind)
        return json_response({"conversationId": conversation.id}, 201)

    def _conversation(self, request: Request, kind: ChatKind) -> Conversation | None:
        """The conversation named in the path, if it is a UUID this API knows."""
        conversation_id: str = request.path_params["conversation_id"]
        return self.store.find_conversation(kind, conversation_id) if is_uuid(conversation_id) else None

    async def history(self, request: Request) -> Response:
        kind = self._kind(request)
        if denied := self._auth(request, kind):
            return denied
        conversation = self._conversation(request, kind)
        if conversation is None:
            return chat_error(404)
        return json_response({"messages": [m.as_json() for m in conversation.messages]})

    async def send_message(self, request: Request) -> Any:
        kind = self._kind(request)
        fault = self.take_fault(kind)
        if fault is not None and fault.status is not None:
            return self.fault_response(kind, fault, {})
        if fault is not None and fault.raw_chunks is not None:
            return self.stream([], kind, fault, {})
        if denied := self._auth(request, kind):
            return denied
        conversation = self._conversation(request, kind)
        if conversation is None:
            return chat_error(404)
        try:
            raw = json.loads(await request.body())
        except ValueError:
            return chat_error(400, NOT_JSON)
        try:
            message = ChatMessageBody.model_validate(raw).message
        except ValidationError:
            return chat_error(400, MESSAGE_REQUIRED)
        if not message.strip():
            return chat_error(400, MESSAGE_REQUIRED)
        if len(message) > self.config.max_message_chars:
            return chat_error(400, f"Message too long (max {self.config.max_message_chars} characters)")
        if conversation.user_messages >= self.config.message_limit:
            return chat_error(429)
        if not self.store.charge_lexey():
            return chat_error(402)

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
        return self.stream(events, kind, fault, {})
