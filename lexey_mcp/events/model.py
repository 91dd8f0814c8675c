"""One received webhook (`Event`), what an escalation looks like to MCP clients (`Escalation`), and the
URIs a new event announces."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from ..models import Schema
from ..toolsets import CONVERSATION_MESSAGES_URI, ESCALATIONS_URI

ESCALATED = "conversation.escalated"
#: How many escalations `list_escalations` returns by default, and at most; the resource shows the default.
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
#: The webhook's trailing messages kept on an escalation.
ESCALATION_MESSAGES = 5


def conversation_uri(conversation_id: str) -> str:
    return CONVERSATION_MESSAGES_URI.format(conversation_id=conversation_id)


class EventShapeError(ValueError):
    """The body is JSON but not a Lexey event."""


@dataclass(frozen=True)
class Event:
    """A webhook as received. `key` identifies a delivery's event, so a redelivery is stored once."""

    type: str
    conversation_id: str | None
    timestamp: str | None
    occurred_at: float  # the event's timestamp as epoch seconds (the receipt time when it has none)
    received_at: float
    body: dict[str, Any]

    @property
    def key(self) -> str:
        identity = [self.type, self.conversation_id, _instant(self.timestamp)]
        if self.timestamp is None or self.conversation_id is None:  # too little to tell events apart: the body
            identity.append(json.dumps(self.body, sort_keys=True))
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()

    def announces(self) -> list[str]:
        """The resource URIs a new event of this kind changes (unknown kinds are kept, not announced)."""
        if self.type != ESCALATED:
            return []
        return [ESCALATIONS_URI] + ([conversation_uri(self.conversation_id)] if self.conversation_id else [])


def parse_time(value: str) -> datetime:
    """ISO 8601 (a trailing Z allowed); a time without a zone is UTC. ValueError otherwise."""
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _instant(timestamp: str | None) -> str | None:
    """The moment a timestamp names, in one spelling (a redelivery is one event however its time is written); an
    unparseable one as given."""
    if timestamp is None:
        return None
    try:
        return parse_time(timestamp).astimezone(UTC).isoformat()
    except ValueError:
        return timestamp


def parse_event(payload: object, received_at: float) -> Event:
    """A decoded webhook body as an `Event`; `EventShapeError` if it is not a JSON object naming its event."""
    if not isinstance(payload, dict):
        raise EventShapeError("the body must be a JSON object")
    kind = payload.get("event")
    if not isinstance(kind, str) or not kind:
        raise EventShapeError('the body must name its event type in "event"')
    if kind == ESCALATED:
        _check_escalation(payload)
    conversation = payload.get("conversation")
    cid = conversation.get("id") if isinstance(conversation, dict) else None
    timestamp = payload.get("timestamp")
    timestamp = timestamp if isinstance(timestamp, str) else None
    occurred_at = received_at
    if timestamp is not None:
        with contextlib.suppress(ValueError):  # an odd timestamp still identifies the event; sort by receipt
            occurred_at = parse_time(timestamp).timestamp()
    return Event(kind, cid if isinstance(cid, str) else None, timestamp, occurred_at, received_at, payload)


#: The documented shape of a `conversation.escalated` webhook (docs/escalations.md).
ESCALATION_SHAPE = (
    '{"event": "conversation.escalated", "timestamp": "<ISO 8601>", "conversation": {"id", "status", '
    '"customerIdentifier", "createdAt"}, "messages": [{"role", "content", "createdAt"}], "payload": {"reason"}}'
)


def _check_escalation(payload: dict[str, Any]) -> None:
    """`EventShapeError` naming the first field of a `conversation.escalated` body that is missing or mistyped
    (a guessed field name is refused, not kept as an escalation without a conversation or a reason)."""

    def wrong(field: str, expected: str) -> EventShapeError:
        return EventShapeError(f"{field} must be {expected} (the documented shape: {ESCALATION_SHAPE})")

    timestamp = payload.get("timestamp")
    if not isinstance(timestamp, str):
        raise wrong("timestamp", "an ISO 8601 date-time string")
    try:
        parse_time(timestamp)
    except ValueError:
        raise wrong("timestamp", "an ISO 8601 date-time string") from None
    conversation = payload.get("conversation")
    if not isinstance(conversation, dict):
        raise wrong("conversation", "an object")
    if not isinstance(conversation.get("id"), str) or not conversation["id"]:
        raise wrong("conversation.id", "a non-empty string")
    for field in ("status", "customerIdentifier", "createdAt"):
        if conversation.get(field) is not None and not isinstance(conversation[field], str):
            raise wrong(f"conversation.{field}", "a string when present")
    details = payload.get("payload")
    if not isinstance(details, dict):
        raise wrong("payload", "an object")
    if not isinstance(details.get("reason"), str):
        raise wrong("payload.reason", "a string")
    messages = payload.get("messages")
    if messages is not None and not (isinstance(messages, list) and all(isinstance(m, dict) for m in messages)):
        raise wrong("messages", "a list of objects when present")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


class EscalationMessage(Schema):
    role: str | None = None
    content: str | None = None
    createdAt: str | None = None


class TestMark(Schema):
    """The test run that made a conversation (`run_test_suite`)."""

    __test__ = False  # not a pytest class, whatever its name
    suite: str
    case: str


class Escalation(Schema):
    """A conversation Lexey's agent handed to a human, from its `conversation.escalated` webhook."""

    conversation_id: str | None = None
    reason: str | None = None
    customer_identifier: str | None = None
    status: str | None = None
    escalated_at: str = Field(description="The webhook's timestamp (ISO 8601).")
    received_at: str = Field(description="When this server received it (ISO 8601, UTC).")
    messages: list[EscalationMessage] = Field(
        default_factory=list, description="The conversation's last messages, oldest first."
    )
    test: TestMark | None = Field(None, description="A test suite's run made this conversation: not a customer.")

    @classmethod
    def from_event(cls, event: Event, test: TestMark | None = None) -> Escalation:
        body = event.body
        conversation = _object(body.get("conversation"))
        details = _object(body.get("payload"))
        raw = body.get("messages")
        messages = [
            EscalationMessage(**{k: str(m[k]) for k in ("role", "content", "createdAt") if m.get(k) is not None})
            for m in (raw[-ESCALATION_MESSAGES:] if isinstance(raw, list) else [])
            if isinstance(m, dict)
        ]
        return cls(
            conversation_id=event.conversation_id,
            reason=_text(details.get("reason")),
            customer_identifier=_text(conversation.get("customerIdentifier")),
            status=_text(conversation.get("status")),
            escalated_at=event.timestamp or _iso(event.occurred_at),
            received_at=_iso(event.received_at),
            messages=messages,
            test=test,
        )


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return None if value is None else str(value)


class EscalationList(Schema):
    """Escalations, newest first."""

    escalations: list[Escalation]
    total: int = Field(0, description="Escalations kept in all (since `since`, when given).")
    more: bool = Field(False, description="Older ones than are listed here: ask with a larger limit.")
    not_receiving: str | None = Field(
        None, description="Why this server receives no escalations, and how to turn the feed on."
    )
