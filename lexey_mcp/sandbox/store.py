"""In-memory state of one sandbox: the organisation, conversations, the Lexi workspace, and counters."""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple

import anyio

from .config import NOMINAL_LEXI_CREDITS, SandboxConfig
from .faults import FaultQueue
from .wire import Frame

ChatKind = Literal["customer", "management"]
Role = Literal["user", "assistant"]
CloseReason = Literal["completed", "dropped", "disconnected", "cancelled"]

IDEMPOTENCY_TTL = 24 * 3600.0
#: API requests remembered in `Store.key_log` (the oldest are forgotten first).
KEY_LOG_LIMIT = 10_000


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-23T10:00:00.000Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Message:
    role: Role
    content: str
    created_at: datetime

    def as_json(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content, "createdAt": iso(self.created_at)}


@dataclass
class Conversation:
    id: str
    kind: ChatKind
    created_at: datetime
    messages: list[Message] = field(default_factory=list)
    escalated_at: datetime | None = None

    @property
    def user_messages(self) -> int:
        return sum(1 for m in self.messages if m.role == "user")


@dataclass
class Article:
    topic: str
    body: str


@dataclass
class Organisation:
    """What the management agent configures and the customer agent uses."""

    business_context: str | None = None
    articles: dict[str, Article] = field(default_factory=dict)
    agent_name: str | None = None
    primary_colour: str | None = None
    welcome_heading: str | None = None
    escalation_phrases: list[str] = field(default_factory=list)


@dataclass
class LexiConversation:
    id: str
    messages: list[Message] = field(default_factory=list)


@dataclass
class IdempotentReply:
    fingerprint: str
    created: float
    events: list[Frame]


@dataclass
class SandboxStats:
    """Live counters. `requests` counts API requests (not `/_sandbox/*`)."""

    requests: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_disconnected: int = 0
    streams_cancelled: int = 0
    open_streams: int = 0
    faults_applied: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class RequestRecord(NamedTuple):
    method: str
    path: str
    key_type: str | None  # "customer" | "management" | "lexi" | "unknown" | None (no bearer)


class KeyUse(NamedTuple):
    """Which key an API request carried: a fingerprint, never the key (tests compare `key_fingerprint(key)`)."""

    method: str
    path: str
    key_id: str | None  # None: no bearer key
    idempotency_key: str | None


def key_fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class Store:
    """All mutable sandbox state. Single event loop, so no locks."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)  # noqa: S311 - reproducible ids, not secrets
        self.org = Organisation()
        self.conversations: dict[str, Conversation] = {}
        self.lexi_conversations: dict[str, LexiConversation] = {}
        self.idempotency: dict[str, IdempotentReply] = {}
        self.lexey_credits: int | None = config.credits
        self.lexi_credits: int | None = config.credits
        self.lexi_spent = 0
        self._rate_day: str = ""
        self._rate_used = 0
        self.faults = FaultQueue()
        self.stats = SandboxStats()
        self.last_headers: dict[str, dict[str, str]] = {}
        self.requests_log: list[RequestRecord] = []
        self.key_log: deque[KeyUse] = deque(maxlen=KEY_LOG_LIMIT)
        self.closed_reasons: list[CloseReason] = []
        self._closed_event: anyio.Event | None = None
        self._open_scopes: set[anyio.CancelScope] = set()
        self.shutting_down = False

    # ids
    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def new_request_id(self) -> str:
        return f"req_{self._rng.getrandbits(96):024x}"

    def new_message_id(self) -> str:
        return f"msg_{self._rng.getrandbits(96):024x}"

    # chat
    def create_conversation(self, kind: ChatKind) -> Conversation:
        conversation = Conversation(id=self.new_uuid(), kind=kind, created_at=now())
        self.conversations[conversation.id] = conversation
        return conversation

    def find_conversation(self, kind: ChatKind, conversation_id: str) -> Conversation | None:
        found = self.conversations.get(conversation_id.lower())
        return found if found is not None and found.kind == kind else None

    def charge_lexey(self) -> bool:
        """Take one message credit; False when none is left."""
        if self.lexey_credits is None:
            return True
        if self.lexey_credits < 1:
            return False
        self.lexey_credits -= 1
        return True

    # Lexi
    def new_lexi_conversation(self) -> LexiConversation:
        conversation = LexiConversation(id=self.new_uuid())
        self.lexi_conversations[conversation.id] = conversation
        return conversation

    def lexi_balance(self) -> int:
        if self.lexi_credits is None:
            return max(0, NOMINAL_LEXI_CREDITS - self.lexi_spent)
        return self.lexi_credits

    def charge_lexi(self, cost: int) -> bool:
        if self.lexi_credits is not None:
            if self.lexi_credits < cost:
                return False
            self.lexi_credits -= cost
        self.lexi_spent += cost
        return True

    def rate_limit(self, *, consume: bool) -> tuple[int, int, int]:
        """(limit, remaining, reset epoch). With `consume`, count one request if any remain."""
        today = time.strftime("%Y-%m-%d", time.gmtime())
        if today != self._rate_day:
            self._rate_day, self._rate_used = today, 0
        limit = self.config.lexi_daily_limit
        if consume and self._rate_used < limit:
            self._rate_used += 1
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        return limit, max(0, limit - self._rate_used), int(midnight.timestamp())

    def rate_limited(self) -> bool:
        self.rate_limit(consume=False)
        return self._rate_used >= self.config.lexi_daily_limit

    def idempotent_reply(self, key: str) -> IdempotentReply | None:
        reply = self.idempotency.get(key)
        if reply is not None and time.time() - reply.created > IDEMPOTENCY_TTL:
            del self.idempotency[key]
            return None
        return reply

    # observability
    def record_request(
        self, method: str, path: str, key_type: str | None, kind: str | None, headers: dict[str, str]
    ) -> None:
        self.stats.requests += 1
        self.requests_log.append(RequestRecord(method, path, key_type))
        if kind is not None:
            self.last_headers[kind] = headers

    def record_key(self, method: str, path: str, key: str | None, idempotency_key: str | None) -> None:
        self.key_log.append(KeyUse(method, path, None if key is None else key_fingerprint(key), idempotency_key))

    def stream_opened(self, scope: anyio.CancelScope) -> None:
        self.stats.streams_started += 1
        self.stats.open_streams += 1
        self._open_scopes.add(scope)
        if self.shutting_down:
            scope.cancel()

    def stream_closed(self, scope: anyio.CancelScope, reason: CloseReason) -> None:
        self._open_scopes.discard(scope)
        self.stats.open_streams -= 1
        if reason in ("completed", "dropped"):
            self.stats.streams_completed += 1
        elif reason == "disconnected":
            self.stats.streams_disconnected += 1
        else:
            self.stats.streams_cancelled += 1
        self.closed_reasons.append(reason)
        if self._closed_event is not None:
            self._closed_event.set()
            self._closed_event = None

    def cancel_streams(self) -> None:
        """Shutdown: end every open stream now (their connections are then force-closed)."""
        self.shutting_down = True
        for scope in list(self._open_scopes):
            scope.cancel()

    async def wait_for_stream_closed(self, timeout: float) -> CloseReason:  # noqa: ASYNC109
        """Wait for an open stream to close and return why; with none open, the last close reason at once.

        Raises TimeoutError after `timeout` seconds.
        """
        seen = len(self.closed_reasons)
        with anyio.fail_after(timeout):
            if self.stats.open_streams == 0 and self.closed_reasons:
                return self.closed_reasons[-1]
            while len(self.closed_reasons) == seen:
                if self._closed_event is None:
                    self._closed_event = anyio.Event()
                await self._closed_event.wait()
        return self.closed_reasons[seen]
