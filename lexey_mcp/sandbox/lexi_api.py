"""Lexi, LeadLex's CRM assistant: one streaming route with rate limits, credits and idempotency."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..validation import LEXI_MAX_MESSAGE_CHARS, LexiContext
from . import lexi
from .errors import (
    BAD_ALLOW_TOOLS,
    BAD_CONTEXT,
    BAD_CONVERSATION_ID,
    BAD_IDEMPOTENCY_KEY,
    IDEMPOTENCY_KEY_REUSED,
    LEXI_DAILY_LIMIT,
    MESSAGE_REQUIRED,
    NOT_AN_OBJECT,
    NOT_JSON,
    lexi_error_response,
)
from .routing import LEXI_PREFIX, Streams, bearer, is_uuid, key_type
from .store import IdempotentReply, now
from .store import Message as StoredMessage
from .wire import Frame, dumps, words

LEXI_STREAM = f"{LEXI_PREFIX}/v1/lexi/chat/stream"


class ContextBody(LexiContext):
    """The documented context keys, strings; other keys are ignored, as Lexi does."""

    model_config = ConfigDict(strict=True, extra="ignore")


class LexiChatBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    message: str
    conversation_id: str | None = None
    context: ContextBody | None = None
    allow_tools: bool = True


# What a failed field is answered with (the first failing field, in the model's order, decides).
_FIELD_ERRORS = {
    "message": MESSAGE_REQUIRED,
    "conversation_id": BAD_CONVERSATION_ID,
    "context": BAD_CONTEXT,
    "allow_tools": BAD_ALLOW_TOOLS,
}


class LexiAPI(Streams):
    def routes(self) -> list[Route]:
        return [Route(LEXI_STREAM, self.chat_stream, methods=["POST"])]

    def _rate_headers(self, *, consume: bool = False, exhausted: bool = False) -> dict[str, str]:
        limit, remaining, reset = self.store.rate_limit(consume=consume)
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": "0" if exhausted else str(remaining),
            "x-ratelimit-reset": str(reset),
        }

    async def chat_stream(self, request: Request) -> Any:
        fault = self.take_fault("lexi")
        if fault is not None and fault.status is not None:
            return self.fault_response("lexi", fault, self._rate_headers(exhausted=fault.status == 429))
        if fault is not None and fault.raw_chunks is not None:
            return self.stream([], "lexi", fault, self._rate_headers())
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        headers = self._rate_headers(consume=True)
        asked = await _read_request(request)
        if isinstance(asked, str):
            return lexi_error_response(400, headers, asked)
        replay = self.store.idempotent_reply(asked.idempotency_key) if asked.idempotency_key else None
        if replay is not None:
            if replay.fingerprint != asked.fingerprint:
                return lexi_error_response(400, headers, IDEMPOTENCY_KEY_REUSED)
            return self.stream(replay.events, "lexi", fault, headers)
        existing = None
        if asked.conversation_id is not None:
            existing = self.store.lexi_conversations.get(asked.conversation_id.lower())
            if existing is None:
                return lexi_error_response(404, headers)
        history = existing.messages if existing else []
        result = lexi.answer(asked.message, asked.context, allow_tools=asked.allow_tools, history=history)
        if not self.store.charge_lexi(result.cost):
            return lexi_error_response(402, headers)
        conversation = existing or self.store.new_lexi_conversation()
        moment = now()
        conversation.messages += [
            StoredMessage("user", asked.message, moment),
            StoredMessage("assistant", result.text, moment),
        ]
        events = self._events(result, conversation.id)
        if asked.idempotency_key:
            self.store.idempotency[asked.idempotency_key] = IdempotentReply(asked.fingerprint, time.time(), events)
        return self.stream(events, "lexi", fault, headers)

    def _refusal(self, request: Request) -> Response | None:
        """The answer to a request whose key is refused (401, 403) or over the daily limit (429); None to go on."""
        key = bearer(dict(request.headers))
        if key_type(key) != "lexi" or (self.config.keys is not None and key not in self.config.keys):
            return lexi_error_response(401, self._rate_headers())
        if key in self.config.keys_without_lexi_permission:
            return lexi_error_response(403, self._rate_headers())
        if self.store.rate_limited():
            headers = self._rate_headers()
            headers["retry-after"] = str(max(1, int(headers["x-ratelimit-reset"]) - int(time.time())))
            return lexi_error_response(429, headers, LEXI_DAILY_LIMIT)
        return None

    def _events(self, result: lexi.LexiAnswer, conversation_id: str) -> list[Frame]:
        """The stream of one answer: thinking, tool steps, the text word by word, done."""
        events = [Frame(dumps({"text": t}), event="thinking") for t in result.thinking]
        for call in result.tools:
            events.append(Frame(dumps({"tool": call.tool, "status": "started"}), event="tool_step"))
            events.append(
                Frame(dumps({"tool": call.tool, "status": "completed", "summary": call.summary}), event="tool_step")
            )
        events += [
            Frame(dumps({"delta": w, "conversation_id": conversation_id}), event="text") for w in words(result.text)
        ]
        done = {"credits_remaining": self.store.lexi_balance(), "message_id": self.store.new_message_id()}
        events.append(Frame(dumps(done), event="done"))
        return events


@dataclass(frozen=True)
class _Asked:
    """A valid chat request."""

    message: str
    conversation_id: str | None
    context: dict[str, str]
    allow_tools: bool
    idempotency_key: str | None

    @property
    def fingerprint(self) -> str:
        """What an idempotency key's replay must match."""
        return dumps([self.message, self.conversation_id, self.context, self.allow_tools])


async def _read_request(request: Request) -> _Asked | str:
    """The request, or the message of the 400 refusing it."""
    try:
        raw = json.loads(await request.body())
    except ValueError:
        return NOT_JSON
    if not isinstance(raw, dict):
        return NOT_AN_OBJECT
    try:
        body = LexiChatBody.model_validate(raw)
    except ValidationError as exc:
        return _FIELD_ERRORS[str(exc.errors()[0]["loc"][0])]
    message, conversation_id = body.message, body.conversation_id
    if not message.strip():
        return MESSAGE_REQUIRED
    if len(message) > LEXI_MAX_MESSAGE_CHARS:
        return f"message exceeds {LEXI_MAX_MESSAGE_CHARS:,} characters"
    if conversation_id is not None and not is_uuid(conversation_id):
        return BAD_CONVERSATION_ID
    context = body.context.model_dump(exclude_none=True) if body.context else {}
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None and not is_uuid(idempotency_key):
        return BAD_IDEMPOTENCY_KEY
    return _Asked(message, conversation_id, context, body.allow_tools, idempotency_key)
