"""The event feed: receiver, store and bus put together, with one lifecycle (the MCP server's lifespan)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated, SubscriptionBus

from .. import redis_connection
from ..paths import WEBHOOK_PATH
from .bus import LegacySubscriptions, RedisSubscriptionBus
from .model import Escalation, EscalationList, Event
from .receiver import WebhookReceiver, serve_listener
from .store import STATE_FILE, EventStore, EventStoreUnavailable, store_for

if TYPE_CHECKING:
    from ..config import Settings

logger = logging.getLogger("lexey_mcp.events")

PRUNE_EVERY = 3600.0


def state_dir_problem(settings: Settings) -> str | None:
    """Why LEXEY_STATE_DIR cannot hold the event store, checked at start-up (None when it can, or when Redis holds
    the events). Never the path itself: a setting's value is not echoed."""
    if settings.redis_url is not None:
        return None
    path = settings.state_dir.expanduser()
    why = None
    if path.exists() and not path.is_dir():
        why = "it is a file, not a directory"
    else:
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            why = f"it cannot be created ({exc.strerror or type(exc).__name__})"
    if why is None and not os.access(path, os.W_OK | os.X_OK):
        why = "this user cannot write to it"
    if why is None:
        return None
    return (
        f"LEXEY_STATE_DIR cannot hold the escalation feed's events: {why}. Set it to a directory this user can "
        "write; for example LEXEY_STATE_DIR=~/.local/state/lexey-mcp (the default)."
    )


@dataclass(frozen=True)
class EventOptions:
    """How this process receives webhooks.

    `webhook_port`: serve the receiver on its own listener (stdio mode; 0 picks a free port). `public_url`:
    where the MCP HTTP app's own route is reached (HTTP mode). `sandbox`: state in a temporary directory, a
    generated secret when none is set, and a free loopback listener when there is no other way in, so the
    embedded sandbox's webhooks reach this server with no setup. `sessions`: False for stateless HTTP, where
    legacy `resources/subscribe` cannot work (nothing is left to notify once the request is answered), so it is
    neither served nor advertised; 2026-07-28 `subscriptions/listen` streams work either way.
    """

    webhook_host: str = "127.0.0.1"
    webhook_port: int | None = None
    #: `webhook_port` already bound by the caller (the command line binds every port before anything serves).
    webhook_sockets: tuple[socket.socket, ...] | None = None
    public_url: str | None = None
    sandbox: bool = False
    sessions: bool = True


class EventFeed:
    """Webhooks in, escalations out, `ResourceUpdated` on `bus` for everything new. Enter it (`async with`)
    before use; the store opens on first use."""

    def __init__(self, settings: Settings, options: EventOptions = EventOptions()) -> None:
        configured = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        self._secret = configured or (secrets.token_urlsafe(32) if options.sandbox else None)
        self.options = options
        self._settings = settings
        redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
        self._redis_url = redis_url
        self.bus: SubscriptionBus = (
            RedisSubscriptionBus(redis_url, settings.redis_prefix() + "notifications")
            if redis_url
            else InMemorySubscriptionBus()
        )
        self.receiver = WebhookReceiver(self._secret, self.record)
        #: Hears how many events the SQLite store dropped to stay under LEXEY_EVENT_STORE_MAX_MB (the metric).
        self.on_evict: Callable[[int], None] = lambda count: None
        self.legacy = LegacySubscriptions()
        #: Where this server's receiver is reached, when known (the sandbox posts there).
        self.webhook_url: str | None = None
        self._store: EventStore | None = None
        self._stack: AsyncExitStack | None = None
        self._users = 0  # in-process clients each run the server's lifespan: the first opens, the last closes
        #: Why this server receives no webhooks, and how to turn that on (None while it receives them).
        self.not_receiving: str | None = "the event feed is not running."

    @property
    def webhook_secret(self) -> str | None:
        """The secret webhooks are signed with (for wiring the embedded sandbox; never log it)."""
        return self._secret

    @property
    def store(self) -> EventStore:
        if self._store is None:
            raise EventStoreUnavailable("the event feed is not running")
        return self._store

    async def record(self, event: Event) -> bool:
        """Keep `event`; if it is new, announce what it changes. False for a redelivery."""
        added = await self.store.add(event)
        if added:
            for uri in event.announces():
                await self.announce(uri)
        return added

    async def announce(self, uri: str) -> None:
        """Tell subscribers (both protocol eras, every replica) that `uri` changed. Never raises."""
        try:
            await self.bus.publish(ResourceUpdated(uri=uri))
        except Exception as exc:  # a notification lost must not fail the webhook or the tool call behind it
            logger.warning("could not announce %s: %s", uri, exc)

    async def escalations(self, since: float | None = None, limit: int = 20) -> list[Escalation]:
        events = await self.store.escalations(since, limit)
        marks = await self.store.marks({e.conversation_id for e in events if e.conversation_id is not None})
        return [Escalation.from_event(e, marks.get(e.conversation_id or "")) for e in events]

    async def listing(self, since: float | None = None, limit: int = 20) -> EscalationList:
        """The latest `limit` escalations at or after `since`, how many there are in all, and why none arrive when
        this server receives none (list_escalations and lexey://escalations)."""
        found = await self.escalations(since, limit)
        total = max(len(found), await self.store.count_escalations(since))  # one may have arrived in between
        return EscalationList(escalations=found, total=total, more=total > len(found), not_receiving=self.not_receiving)

    async def store_problem(self) -> str | None:
        """Why the SQLite event store cannot be used now (a readiness check); None when it can. Redis has its own
        check, and recovers by itself when Redis returns."""
        if self._redis_url or (self.options.sandbox and self._store is None):
            return None
        if self._store is None:  # not running (HTTP runs it per session): whether it could
            return state_dir_problem(self._settings)
        try:
            await self.store.count_escalations(None)
        except EventStoreUnavailable as exc:
            return f"{str(exc).rstrip('.')}; set LEXEY_STATE_DIR to a directory this user can write."
        return None

    def _where(self, state_dir: Path) -> str:
        if self._redis_url:
            return f"Redis at {redis_connection.location(self._redis_url)}"
        return str(state_dir / STATE_FILE)

    async def __aenter__(self) -> Self:
        self._users += 1
        if self._users > 1:
            return self
        stack = AsyncExitStack()
        try:
            if self.options.sandbox:
                state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lexey-mcp-events-")))
            else:
                state_dir = self._settings.state_dir.expanduser()
            store = store_for(self._settings, state_dir)
            store.on_evict = self.on_evict
            stack.push_async_callback(store.aclose)
            group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(group.cancel_scope.cancel)
            if isinstance(self.bus, RedisSubscriptionBus):
                await group.start(self.bus.run)
            stack.callback(self.legacy.attach(self.bus, group))
            self._store = store
            group.start_soon(self._prune_periodically)
            await self._start_receiver(group, state_dir)
        except BaseException:
            self._users -= 1
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def _start_receiver(self, group: anyio.abc.TaskGroup, state_dir: Path) -> None:
        """Listen for webhooks, when there is a way in; otherwise say why not (the log, and `not_receiving` for
        list_escalations). Nothing is announced that is not listening."""
        if self._secret is None:
            self.not_receiving = (
                "LEXEY_WEBHOOK_SECRET is not set. To receive escalations, set it to the secret in Lexey's webhook "
                f"settings{'' if self.options.public_url else ', start lexey-mcp with --webhook-port PORT'} and give "
                f"Lexey this server's URL ending in {WEBHOOK_PATH}."
            )
            logger.info("webhook receiver off: %s", self.not_receiving)
            return
        problem = await self.store_problem()
        if problem is not None:  # every webhook would get 503
            self.not_receiving = problem
            logger.error("webhook receiver off: %s", problem)
            return
        port = self.options.webhook_port
        if port is None and self.options.sandbox and self.options.public_url is None:
            port = 0
        if port is None and self.options.public_url is None:
            self.not_receiving = (
                "LEXEY_WEBHOOK_SECRET is set, but over stdio webhooks need a port of their own: start lexey-mcp "
                "with --webhook-port PORT (for example --webhook-port 8787)."
            )
            logger.warning("webhook receiver off: %s", self.not_receiving)
            return
        if port is not None:
            self.webhook_url = await group.start(
                partial(serve_listener, sockets=self.options.webhook_sockets),
                self.receiver,
                self.options.webhook_host,
                port,
                self._settings.header_timeout,
                self._settings.max_concurrency,
            )
        else:
            self.webhook_url = self.options.public_url
        self.not_receiving = None
        logger.info(
            "webhook receiver on at %s; events kept in %s for %g days",
            self.webhook_url,
            self._where(state_dir),
            self._settings.event_retention_days,
        )

    async def _prune_periodically(self) -> None:
        while True:
            await anyio.sleep(PRUNE_EVERY)
            try:
                dropped = await self.store.prune(time.time())
            except EventStoreUnavailable as exc:
                logger.warning("could not drop old events: %s", exc)
            else:
                if dropped:
                    logger.info("dropped %d events past the retention period", dropped)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._users -= 1
        if self._users > 0:
            return
        stack, self._stack = self._stack, None
        self._store = None
        self.not_receiving = "the event feed is not running."
        if stack is not None:
            await stack.aclose()
