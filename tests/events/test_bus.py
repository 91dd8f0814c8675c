"""Legacy `resources/subscribe` delivery, against the SDK's own `Connection` over a client that stops reading."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from anyio import wait_all_tasks_blocked
from mcp.server.connection import Connection
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated

from lexey_mcp.events.bus import LegacySubscriptions

ESCALATIONS = "lexey://escalations"
CONVERSATION = "lexey://conversations/c1/messages"


class StalledClient:
    """A connection's outbound channel whose client has stopped reading: every send waits until `resume`."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.resume = anyio.Event()

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: object = None) -> None:
        assert params is not None
        self.sent.append(params["uri"])
        await self.resume.wait()


async def test_a_stalled_client_is_owed_one_notification_per_uri(anyio_backend: str) -> None:
    client = StalledClient()
    connection = Connection(client, protocol_version="2025-11-25")  # type: ignore[arg-type]
    legacy, bus = LegacySubscriptions(), InMemorySubscriptionBus()
    async with anyio.create_task_group() as group:
        detach = legacy.attach(bus, group)
        legacy.add(connection, ESCALATIONS)
        legacy.add(connection, CONVERSATION)
        for _ in range(200):
            await bus.publish(ResourceUpdated(uri=ESCALATIONS))
            await bus.publish(ResourceUpdated(uri=CONVERSATION))
            await bus.publish(ResourceUpdated(uri="lexey://conversations/other/messages"))  # not subscribed
        await wait_all_tasks_blocked()
        assert len(client.sent) == 1  # one send in flight, not one task per event
        client.resume.set()
        await wait_all_tasks_blocked()
        detach()
    # Once it reads again, each URI changed since its last notification is announced (once more for the one that
    # was in flight, if it changed after that send began).
    assert sorted(client.sent) in ([CONVERSATION, ESCALATIONS], [CONVERSATION, ESCALATIONS, ESCALATIONS])
