"""The SQLite store: kept across restarts, retention, ordering and `since`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lexey_mcp.events.feed import EventFeed, EventOptions
from lexey_mcp.events.model import parse_event, parse_time
from lexey_mcp.events.store import DAY, SQLiteEventStore
from tests.events.conftest import events_settings
from tests.events.helpers import escalation


async def test_events_survive_a_restart(tmp_path: Path, anyio_backend: str) -> None:
    payload = escalation()
    async with EventFeed(events_settings(tmp_path), EventOptions()) as feed:
        assert await feed.record(parse_event(payload, time.time()))
    async with EventFeed(events_settings(tmp_path), EventOptions()) as feed:
        [kept] = await feed.escalations()
        assert kept.conversation_id == payload["conversation"]["id"]
        assert not await feed.record(parse_event(payload, time.time()))  # still a redelivery after the restart


async def test_retention_drops_old_events_on_open_and_when_pruning(tmp_path: Path, anyio_backend: str) -> None:
    now = time.time()
    path = tmp_path / "events.sqlite3"
    store = SQLiteEventStore(path, retention_days=30)
    await store.add(parse_event(escalation(minutes=1), now - 31 * DAY))
    await store.add(parse_event(escalation(minutes=2), now - 29 * DAY))
    await store.add(parse_event(escalation(minutes=3), now))
    assert len(await store.escalations(None, 100)) == 3
    await store.aclose()
    reopened = SQLiteEventStore(path, retention_days=30)
    assert len(await reopened.escalations(None, 100)) == 2  # the 31-day-old one went when it opened
    assert await reopened.prune(now + 1.5 * DAY) == 1
    assert len(await reopened.escalations(None, 100)) == 1
    await reopened.aclose()


async def test_newest_first_with_since_and_limit(tmp_path: Path, anyio_backend: str) -> None:
    store = SQLiteEventStore(tmp_path / "events.sqlite3", retention_days=30)
    payloads = [escalation(minutes=m) for m in (5, 1, 3, 2, 4)]
    for p in payloads:
        await store.add(parse_event(p, time.time()))
    found = await store.escalations(None, 3)
    assert [e.timestamp for e in found] == [p["timestamp"] for p in sorted(payloads, key=lambda p: p["timestamp"])][
        :-4:-1
    ]
    since = parse_time(payloads[2]["timestamp"]).timestamp()  # minute 3
    assert len(await store.escalations(since, 100)) == 3
    await store.aclose()


@pytest.mark.parametrize("value", ["2026-11-30T09:00:00Z", "2026-11-30T10:00:00+01:00", "2026-11-30T09:00:00"])
def test_iso_times_compare_in_utc(value: str) -> None:
    assert parse_time(value).timestamp() == parse_time("2026-11-30T09:00:00Z").timestamp()
