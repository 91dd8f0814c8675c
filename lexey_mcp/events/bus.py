"""Fan-out of change notifications: the SDK's `SubscriptionBus` over Redis pub/sub for several replicas, and
the legacy (2025) `resources/subscribe` registry, which listens on whichever bus is in use."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    SubscriptionBus,
    ToolsListChanged,
)

from .. import redis_connection

if TYPE_CHECKING:
    from mcp.server.connection import Connection

logger = logging.getLogger("lexey_mcp.events")

_LIST_CHANGED: dict[str, ServerEvent] = {
    "tools_list_changed": ToolsListChanged(),
    "prompts_list_changed": PromptsListChanged(),
    "resources_list_changed": ResourcesListChanged(),
}
RECONNECT_FIRST = 0.1
RECONNECT_MAX = 5.0


def encode(event: ServerEvent) -> str:
    if isinstance(event, ResourceUpdated):
        return json.dumps({"kind": "resource_updated", "uri": event.uri})
    kind = next(k for k, v in _LIST_CHANGED.items() if type(v) is type(event))
    return json.dumps({"kind": kind})


def decode(data: bytes | str) -> ServerEvent | None:
    try:
        message = json.loads(data)
        if message["kind"] == "resource_updated":
            return ResourceUpdated(uri=str(message["uri"]))
        return _LIST_CHANGED[message["kind"]]
    except (ValueError, KeyError, TypeError):
        return None


class RedisSubscriptionBus:
    """A `SubscriptionBus` shared by every replica on one Redis: `publish` goes to a Redis channel; each replica
    reads the channel (`run`, in the server's lifespan) and hands what arrives to its own listeners.

    Redis going away makes `publish` raise (the caller says so) and the reader retry with backoff; listeners
    miss what was published meanwhile (the MCP contract has no replay: clients re-listen and refetch).
    """

    def __init__(self, url: str, channel: str) -> None:
        self.location = redis_connection.location(url)
        self.channel = channel
        self._url = url
        self._local = InMemorySubscriptionBus()
        self._publisher: Any = None

    async def publish(self, event: ServerEvent) -> None:
        try:
            if self._publisher is None:
                self._publisher = redis_connection.connect(self._url)
            await self._publisher.publish(self.channel, encode(event))
        except redis_connection.errors() as exc:
            raise ConnectionError(f"notifications (Redis at {self.location}) are unreachable: {exc}") from None

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        return self._local.subscribe(listener)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Read the channel until cancelled, reconnecting with backoff. Started once Redis answers the first
        subscription, or after the first failure (a server starts while Redis is down, and catches up)."""
        try:
            reader = redis_connection.connect(self._url, socket_timeout=None)  # a quiet channel is not a dead one
        except redis_connection.errors() as exc:
            logger.error("no notifications from other replicas: %s", exc)
            task_status.started()
            return
        delay, lost, started = RECONNECT_FIRST, False, False
        try:
            while True:
                pubsub = reader.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(self.channel)
                    if lost:
                        logger.info("Redis at %s is back: notifications from other replicas resume", self.location)
                    delay, lost = RECONNECT_FIRST, False
                    if not started:
                        started = True
                        task_status.started()
                    async for message in pubsub.listen():
                        event = decode(message["data"]) if message.get("type") == "message" else None
                        if event is not None:
                            await self._local.publish(event)
                except redis_connection.errors() as exc:
                    if not lost:
                        logger.warning(
                            "Redis at %s is unreachable (%s): no notifications from other replicas until it is back",
                            self.location,
                            exc,
                        )
                    lost = True
                    if not started:
                        started = True
                        task_status.started()
                    await anyio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX)
                finally:
                    with anyio.CancelScope(shield=True):
                        await pubsub.aclose()
        finally:
            with anyio.CancelScope(shield=True):
                await reader.aclose()
                if self._publisher is not None:
                    await self._publisher.aclose()
                    self._publisher = None


#: `resources/subscribe` URIs one connection may hold at once.
MAX_LEGACY_SUBSCRIPTIONS = 100


class LegacySubscriptions:
    """`resources/subscribe` connections (protocol 2025-11-25 and earlier) and their URIs, notified with
    `notifications/resources/updated` of every matching `ResourceUpdated` on the bus.

    Keyed by the connection, not the session: the SDK makes a `ServerSession` per request, while the connection
    lives as long as the client is connected, and forgets it on the connection's own teardown (`exit_stack`).
    Each connection has at most one send in flight and a set of URIs still to announce, so a client that stops
    reading costs one pending notification per URI, not one per event (a notification means "refetch it").
    """

    def __init__(self) -> None:
        self._uris: dict[Connection, set[str]] = {}
        self._unsent: dict[Connection, dict[str, None]] = {}  # present while that connection's sender runs
        self._group: TaskGroup | None = None

    def add(self, connection: Connection, uri: str) -> bool:
        """Subscribe `connection` to `uri`; False (nothing changed) when it already holds `MAX_LEGACY_SUBSCRIPTIONS`."""
        if connection not in self._uris:
            self._uris[connection] = set()
            connection.exit_stack.callback(self._uris.pop, connection, None)
        uris = self._uris[connection]
        if uri not in uris and len(uris) >= MAX_LEGACY_SUBSCRIPTIONS:
            return False
        uris.add(uri)
        return True

    def remove(self, connection: Connection, uri: str) -> None:
        self._uris.get(connection, set()).discard(uri)

    def __len__(self) -> int:
        """How many connections are (or were, until they close) subscribed."""
        return len(self._uris)

    def attach(self, bus: SubscriptionBus, group: TaskGroup) -> Callable[[], None]:
        """Start forwarding `bus` events; returns the detach callable."""
        self._group = group
        return bus.subscribe(self._deliver)

    def _deliver(self, event: ServerEvent) -> None:
        if not isinstance(event, ResourceUpdated) or self._group is None:
            return
        for connection, uris in self._uris.items():
            if event.uri not in uris:
                continue
            unsent = self._unsent.get(connection)
            if unsent is None:
                self._unsent[connection] = {event.uri: None}
                self._group.start_soon(self._send, connection)
            else:
                unsent[event.uri] = None

    async def _send(self, connection: Connection) -> None:
        unsent = self._unsent[connection]
        try:
            while unsent:
                uri = next(iter(unsent))
                del unsent[uri]  # before sending: a change during the send is announced again after it
                await connection.notify("notifications/resources/updated", {"uri": uri})  # dropped once closed
        finally:
            del self._unsent[connection]
