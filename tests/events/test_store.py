"""The SQLite store: kept across restarts, retention, ordering and `since`."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from lexey_mcp.events.feed import EventFeed, EventOptions
from lexey_mcp.events.marks import marking_test_runs
from lexey_mcp.events.model import TestMark, parse_event, parse_time
from lexey_mcp.events.store import DAY, EventStoreUnavailable, SQLiteEventStore
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


async def test_events_without_a_conversation_are_told_apart_by_their_body(tmp_path: Path, anyio_backend: str) -> None:
    store = SQLiteEventStore(tmp_path / "events.sqlite3", retention_days=30)
    at = "2026-11-30T09:00:00Z"
    first = parse_event({"event": "org.updated", "timestamp": at, "payload": {"field": "name"}}, time.time())
    second = parse_event({"event": "org.updated", "timestamp": at, "payload": {"field": "plan"}}, time.time())
    assert await store.add(first)
    assert await store.add(second)  # not a redelivery of the first: nothing but the time is shared
    assert not await store.add(first)
    await store.aclose()


async def test_only_this_user_can_read_the_events(tmp_path: Path, anyio_backend: str) -> None:
    state = tmp_path / "state"
    previous = os.umask(0o022)
    try:
        store = SQLiteEventStore(state / "events.sqlite3", retention_days=30)
        await store.add(parse_event(escalation(), time.time()))
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [state, *state.iterdir()]}
        await store.aclose()
    finally:
        os.umask(previous)
    assert modes == {
        "state": 0o700,
        "events.sqlite3": 0o600,
        "events.sqlite3-wal": 0o600,
        "events.sqlite3-shm": 0o600,
    }


async def test_a_redelivery_is_known_however_its_time_is_written(tmp_path: Path, anyio_backend: str) -> None:
    store = SQLiteEventStore(tmp_path / "events.sqlite3", retention_days=30)
    payload = escalation()
    assert await store.add(parse_event({**payload, "timestamp": "2026-11-30T09:00:00Z"}, time.time()))
    for same in ("2026-11-30T10:00:00+01:00", "2026-11-30T09:00:00.000+00:00", "2026-11-30T09:00:00"):
        assert not await store.add(parse_event({**payload, "timestamp": same}, time.time()))
    assert await store.add(parse_event({**payload, "timestamp": "2026-11-30T09:00:01Z"}, time.time()))
    await store.aclose()


@pytest.mark.parametrize("name", ["events.sqlite3", "events.sqlite3-wal", "events.sqlite3-shm"])
async def test_a_symlinked_store_file_is_refused_not_followed(tmp_path: Path, anyio_backend: str, name: str) -> None:
    # It was followed, and the target chmod-ed to 0600.
    target = tmp_path / "someone-elses-file"
    target.write_text("theirs")
    target.chmod(0o644)
    state = tmp_path / "state"
    state.mkdir()
    (state / name).symlink_to(target)
    store = SQLiteEventStore(state / "events.sqlite3", retention_days=30)
    with pytest.raises(EventStoreUnavailable, match=f"{name} is a symlink; refusing to follow it"):
        await store.add(parse_event(escalation(), time.time()))
    await store.aclose()
    assert target.read_text() == "theirs"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


async def test_past_its_size_cap_the_store_drops_the_oldest_events_first(tmp_path: Path, anyio_backend: str) -> None:
    store = SQLiteEventStore(tmp_path / "events.sqlite3", retention_days=30, max_mb=0.01)  # ~10 KiB
    heard: list[int] = []
    store.on_evict = heard.append
    now = time.time()
    sent = [escalation(minutes=i, reason="x" * 1000) for i in range(30)]  # ~1.6 KiB each
    for i, payload in enumerate(sent):
        assert await store.add(parse_event(payload, now + i))
    kept = [e.conversation_id for e in await store.escalations(None, 100)]
    await store.aclose()
    assert store.evicted == sum(heard) == 30 - len(kept)
    assert 0 < len(kept) < 10
    assert kept == [p["conversation"]["id"] for p in reversed(sent)][: len(kept)]  # the newest stay
    reopened = SQLiteEventStore(tmp_path / "events.sqlite3", retention_days=30, max_mb=0.01)
    assert await reopened.add(parse_event(escalation(minutes=99, reason="x" * 1000), now + 99))
    assert len(await reopened.escalations(None, 100)) <= len(kept)  # the size on disk is counted after a restart
    await reopened.aclose()


async def test_a_test_runs_conversation_is_marked_until_retention_drops_it(tmp_path: Path, anyio_backend: str) -> None:
    payloads = [escalation(minutes=1), escalation(minutes=2)]
    ours, theirs = (p["conversation"]["id"] for p in payloads)
    async with EventFeed(events_settings(tmp_path), EventOptions()) as feed:
        await marking_test_runs(lambda: feed.store, "refunds")("big refund", ours)
        for payload in payloads:
            await feed.record(parse_event(payload, time.time()))
        listed = {e.conversation_id: e.test for e in await feed.escalations()}
        assert listed == {ours: TestMark(suite="refunds", case="big refund"), theirs: None}
    store = SQLiteEventStore(tmp_path / "events.sqlite3", retention_days=30)
    assert await store.marks([ours, theirs]) == {ours: TestMark(suite="refunds", case="big refund")}  # kept on disk
    await store.prune(time.time() + 31 * DAY)
    assert await store.marks([ours]) == {}
    await store.aclose()
