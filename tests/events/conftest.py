from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp.server.subscriptions import ResourceUpdated, ServerEvent

from lexey_mcp.config import Settings
from lexey_mcp.events.feed import EventFeed, EventOptions
from tests.events.helpers import SECRET


def events_settings(state_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"webhook_secret": SECRET, "state_dir": state_dir, **overrides}
    return Settings(_env_file=None, **values)


class Heard:
    """Every URI announced on a bus, in order."""

    def __init__(self) -> None:
        self.uris: list[str] = []

    def __call__(self, event: ServerEvent) -> None:
        if isinstance(event, ResourceUpdated):
            self.uris.append(event.uri)


@pytest.fixture
async def feed(tmp_path: Path, anyio_backend: str) -> AsyncIterator[EventFeed]:
    """A running feed on SQLite in tmp_path, its receiver on a free loopback port (`feed.webhook_url`)."""
    async with EventFeed(events_settings(tmp_path), EventOptions(webhook_port=0)) as running:
        yield running
