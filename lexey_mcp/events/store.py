"""Where events are kept: SQLite (stdlib) in the state directory, or Redis shared by every replica.

Both keep an event once per `Event.key` (a redelivery is a no-op), list escalations newest first, drop what is
older than the retention period, and stay under a size cap (LEXEY_EVENT_STORE_MAX_MB) by dropping the events
received first. Both also remember which conversations a test suite made (`mark`), for the retention period, so an
escalation from a test run says so wherever it is listed. Both open on first use, so a server that never receives
or lists an event never touches the disk or the network.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.to_thread

from .. import redis_connection
from ..config import Settings
from .model import ESCALATED, Event, TestMark

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("lexey_mcp.events")

DAY = 86_400.0


class EventStoreUnavailable(Exception):
    """The store cannot be reached or written; the message says which store and why (never a password)."""


class EventStore(Protocol):
    async def add(self, event: Event) -> bool:
        """Keep `event`; False when an event with its key is already kept."""
        ...

    async def escalations(self, since: float | None, limit: int) -> list[Event]:
        """Escalations that occurred at or after `since` (epoch seconds), newest first."""
        ...

    async def count_escalations(self, since: float | None) -> int:
        """How many escalations occurred at or after `since`."""
        ...

    async def prune(self, now: float) -> int:
        """Drop events received before the retention period; how many were dropped."""
        ...

    async def mark(self, conversation_id: str, mark: TestMark) -> None:
        """Remember that a test run made `conversation_id`."""
        ...

    async def marks(self, conversation_ids: Collection[str]) -> dict[str, TestMark]:
        """The test runs among `conversation_ids`."""
        ...

    #: Hears how many events were dropped to keep the store under its size cap, each time some are.
    on_evict: Callable[[int], None]

    async def aclose(self) -> None: ...


def _row(kind: str, cid: str | None, timestamp: str | None, occurred: float, received: float, body: str) -> Event:
    return Event(kind, cid, timestamp, occurred, received, json.loads(body))


class SQLiteEventStore:
    """One SQLite file; calls run in a worker thread, one at a time (SQLite has one writer anyway). The bodies kept
    stay under `max_mb`: past it the events received first go first (`evicted` counts them, and `on_evict` hears of
    each batch). A symlink in the file's place is refused, not followed."""

    def __init__(self, path: Path, retention_days: float, max_mb: float = 256.0) -> None:
        self.path = path
        self.retention = retention_days * DAY
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.evicted = 0
        self.on_evict: Callable[[int], None] = lambda count: None
        self._bytes = 0
        self._db: sqlite3.Connection | None = None
        self._one = anyio.CapacityLimiter(1)

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Escalations hold customers' messages: only this user reads them (SQLite gives its -wal and -shm files
            # the database file's mode). A symlink there (to a file someone else reads, or one we would chmod) is
            # refused: O_NOFOLLOW for the file, a check for SQLite's own two. The mode is set on what was opened: a
            # file made before this rule, or under a lax umask.
            for companion in ("-wal", "-shm"):
                if self.path.with_name(self.path.name + companion).is_symlink():
                    raise OSError(f"{self.path.name}{companion} is a symlink; refusing to follow it")
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            except OSError:
                if self.path.is_symlink():
                    raise OSError(f"{self.path.name} is a symlink; refusing to follow it") from None
                raise
            try:
                os.chmod(fd if os.chmod in os.supports_fd else self.path, 0o600)
            finally:
                os.close(fd)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash; one fsync per checkpoint
            db.execute(
                "CREATE TABLE IF NOT EXISTS events (key TEXT PRIMARY KEY, type TEXT NOT NULL, conversation_id TEXT,"
                " timestamp TEXT, occurred_at REAL NOT NULL, received_at REAL NOT NULL, body TEXT NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS events_by_type ON events (type, occurred_at)")
            db.execute("CREATE INDEX IF NOT EXISTS events_by_receipt ON events (received_at)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS test_runs (conversation_id TEXT PRIMARY KEY, suite TEXT NOT NULL,"
                " test_case TEXT NOT NULL, marked_at REAL NOT NULL)"
            )
            self._db = db
            self._bytes = db.execute("SELECT coalesce(sum(length(body)), 0) FROM events").fetchone()[0]
            self._prune(time.time())
        return self._db

    async def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._one)
        except (sqlite3.Error, OSError) as exc:
            raise EventStoreUnavailable(f"the event store ({self.path}) failed: {exc}") from None

    def _add(self, event: Event) -> bool:
        db = self._open()
        body = json.dumps(event.body)
        row = (
            event.key,
            event.type,
            event.conversation_id,
            event.timestamp,
            event.occurred_at,
            event.received_at,
            body,
        )
        if db.execute("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", row).rowcount != 1:
            return False
        self._bytes += len(body)
        evicted = 0
        if self._bytes > self.max_bytes:
            doomed: list[tuple[str]] = []
            oldest = db.execute("SELECT key, length(body) FROM events ORDER BY received_at")
            for key, size in oldest:
                if self._bytes <= self.max_bytes:
                    break
                doomed.append((key,))
                self._bytes -= size
            oldest.close()
            db.executemany("DELETE FROM events WHERE key = ?", doomed)
            evicted = len(doomed)
        if evicted:
            self.evicted += evicted
            self.on_evict(evicted)
        return True

    async def add(self, event: Event) -> bool:
        added: bool = await self._run(self._add, event)
        return added

    def _escalations(self, since: float | None, limit: int) -> list[Event]:
        rows = self._open().execute(
            "SELECT type, conversation_id, timestamp, occurred_at, received_at, body FROM events"
            " WHERE type = ? AND occurred_at >= ? ORDER BY occurred_at DESC, received_at DESC LIMIT ?",
            (ESCALATED, since if since is not None else float("-inf"), limit),
        )
        return [_row(*row) for row in rows]

    async def escalations(self, since: float | None, limit: int) -> list[Event]:
        found: list[Event] = await self._run(self._escalations, since, limit)
        return found

    def _count(self, since: float | None) -> int:
        query = "SELECT COUNT(*) FROM events WHERE type = ? AND occurred_at >= ?"
        row = self._open().execute(query, (ESCALATED, since if since is not None else float("-inf"))).fetchone()
        return int(row[0])

    async def count_escalations(self, since: float | None) -> int:
        counted: int = await self._run(self._count, since)
        return counted

    def _prune(self, now: float) -> int:
        db = self._open()
        cutoff = (now - self.retention,)
        (size,) = db.execute(
            "SELECT coalesce(sum(length(body)), 0) FROM events WHERE received_at < ?", cutoff
        ).fetchone()
        self._bytes -= size
        dropped: int = db.execute("DELETE FROM events WHERE received_at < ?", cutoff).rowcount
        db.execute("DELETE FROM test_runs WHERE marked_at < ?", cutoff)
        return dropped

    async def prune(self, now: float) -> int:
        dropped: int = await self._run(self._prune, now)
        return dropped

    def _mark(self, conversation_id: str, mark: TestMark) -> None:
        row = (conversation_id, mark.suite, mark.case, time.time())
        self._open().execute("INSERT OR REPLACE INTO test_runs VALUES (?, ?, ?, ?)", row)

    async def mark(self, conversation_id: str, mark: TestMark) -> None:
        await self._run(self._mark, conversation_id, mark)

    def _marks(self, conversation_ids: list[str]) -> dict[str, TestMark]:
        places = ", ".join("?" * len(conversation_ids))
        query = f"SELECT conversation_id, suite, test_case FROM test_runs WHERE conversation_id IN ({places})"  # noqa: S608 - placeholders only
        return {
            cid: TestMark(suite=suite, case=case) for cid, suite, case in self._open().execute(query, conversation_ids)
        }

    async def marks(self, conversation_ids: Collection[str]) -> dict[str, TestMark]:
        if not conversation_ids:
            return {}
        found: dict[str, TestMark] = await self._run(self._marks, list(conversation_ids))
        return found

    async def aclose(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await anyio.to_thread.run_sync(db.close, limiter=self._one)


#: Keep an event (ARGV: its key, record, seconds to live, 1 if an escalation, when it occurred, when it was received,
#: the byte cap, the key prefix); then, while the records kept are over the cap, drop the ones received first. One
#: script: replicas sharing the Redis add and evict atomically. Returns {1 if kept, how many were evicted}.
_ADD = """
if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[3]) then return {0, 0} end
if ARGV[4] == '1' then redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1]) end
local size = string.len(ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], size)
local total = redis.call('INCRBY', KEYS[5], size)
local evicted = 0
while total > tonumber(ARGV[7]) do
  local oldest = redis.call('ZPOPMIN', KEYS[3])
  if #oldest == 0 then break end
  local key = oldest[1]
  total = redis.call('DECRBY', KEYS[5], tonumber(redis.call('HGET', KEYS[4], key) or '0'))
  redis.call('HDEL', KEYS[4], key)
  redis.call('DEL', ARGV[8] .. 'event:' .. key)
  redis.call('ZREM', KEYS[2], key)
  evicted = evicted + 1
end
return {1, evicted}
"""
#: Forget the sizes of events received before ARGV[1] (their records have expired by themselves).
_FORGET = """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
for _, key in ipairs(old) do
  redis.call('DECRBY', KEYS[3], tonumber(redis.call('HGET', KEYS[2], key) or '0'))
  redis.call('HDEL', KEYS[2], key)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return #old
"""


class RedisEventStore:
    """Events as `<prefix>event:<key>` strings that expire with the retention period, escalations indexed in
    the sorted set `<prefix>escalations` by when they occurred. SET NX makes a redelivery a no-op.

    The records kept stay under `max_mb` bytes (shared by every replica): `<prefix>received` orders the events by
    receipt, `<prefix>sizes` holds each record's size and `<prefix>bytes` their sum; past the cap the events received
    first go first (`evicted` counts them, and `on_evict` hears of each batch). Redis's own overhead per key is not
    counted."""

    def __init__(self, url: str, retention_days: float, prefix: str, max_mb: float = 256.0) -> None:
        self.location = redis_connection.location(url)
        self.retention = retention_days * DAY
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.evicted = 0
        self.on_evict: Callable[[int], None] = lambda count: None
        self._url = url
        self.prefix = prefix  # the deployment's (`Settings.redis_prefix`)
        self._redis: Redis | None = None

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = redis_connection.connect(self._url)
        return self._redis

    def _unavailable(self, exc: BaseException) -> EventStoreUnavailable:
        return EventStoreUnavailable(f"the event store (Redis at {self.location}) is unreachable: {exc}")

    async def add(self, event: Event) -> bool:
        record = json.dumps(
            [event.type, event.conversation_id, event.timestamp, event.occurred_at, event.received_at, event.body]
        )
        ttl = max(1, int(event.received_at + self.retention - time.time()))
        p = self.prefix
        keys = [f"{p}event:{event.key}", f"{p}escalations", f"{p}received", f"{p}sizes", f"{p}bytes"]
        escalated = int(event.type == ESCALATED)
        args: list[str | int | float] = [event.key, record, ttl, escalated, event.occurred_at, event.received_at]
        try:
            added, evicted = await self.redis.register_script(_ADD)(keys, [*args, self.max_bytes, p])
        except redis_connection.errors() as exc:
            raise self._unavailable(exc) from None
        if evicted:
            self.evicted += evicted
            self.on_evict(evicted)
        return bool(added)

    async def escalations(self, since: float | None, limit: int) -> list[Event]:
        index = f"{self.prefix}escalations"
        try:
            keys = await self.redis.zrevrangebyscore(index, "+inf", since if since is not None else "-inf", 0, limit)
            if not keys:
                return []
            names = [k.decode() if isinstance(k, bytes) else str(k) for k in keys]
            records = await self.redis.mget([f"{self.prefix}event:{name}" for name in names])
            expired = [name for name, r in zip(names, records, strict=True) if r is None]
            if expired:
                await self.redis.zrem(index, *expired)
        except redis_connection.errors() as exc:
            raise self._unavailable(exc) from None
        return [Event(*json.loads(record)) for record in records if record is not None]

    async def count_escalations(self, since: float | None) -> int:
        # Index entries whose records expired since the last prune count until a listing drops them.
        try:
            counted: int = await self.redis.zcount(
                f"{self.prefix}escalations", since if since is not None else "-inf", "+inf"
            )
        except redis_connection.errors() as exc:
            raise self._unavailable(exc) from None
        return counted

    async def prune(self, now: float) -> int:
        # Event records expire by themselves; the index drops what occurred before the period (expired
        # entries that occurred later go on the next listing), and the size count forgets what was received before it.
        cutoff = now - self.retention
        p = self.prefix
        try:
            dropped: int = await self.redis.zremrangebyscore(f"{p}escalations", "-inf", cutoff)
            await self.redis.register_script(_FORGET)([f"{p}received", f"{p}sizes", f"{p}bytes"], [cutoff])
        except redis_connection.errors() as exc:
            raise self._unavailable(exc) from None
        return dropped

    async def mark(self, conversation_id: str, mark: TestMark) -> None:
        try:
            await self.redis.set(
                f"{self.prefix}test-run:{conversation_id}", mark.model_dump_json(), ex=int(self.retention)
            )
        except redis_connection.errors() as exc:
            raise self._unavailable(exc) from None

    async def marks(self, conversation_ids: Collection[str]) -> dict[str, TestMark]:
        ids = list(conversation_ids)
        if not ids:
            return {}
        try:
            found = await self.redis.mget([f"{self.prefix}test-run:{cid}" for cid in ids])
        except redis_connection.errors() as exc:
            raise self._unavailable(exc) from None
        return {cid: TestMark.model_validate_json(raw) for cid, raw in zip(ids, found, strict=True) if raw is not None}

    async def aclose(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()


#: The SQLite store's file in the state directory.
STATE_FILE = "events.sqlite3"


def store_for(settings: Settings, state_dir: Path) -> EventStore:
    """The deployment's event store: Redis when LEXEY_REDIS_URL is set (every replica, and `lexey-mcp test` given the
    same settings, share it), else SQLite in `state_dir`."""
    retention, max_mb = settings.event_retention_days, settings.event_store_max_mb
    if settings.redis_url is not None:
        return RedisEventStore(settings.redis_url.get_secret_value(), retention, settings.redis_prefix(), max_mb)
    return SQLiteEventStore(state_dir / STATE_FILE, retention, max_mb)
