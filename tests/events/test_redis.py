"""Events through a real redis-server: replicas share the store and the notifications; Redis going away."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.shared.subscriptions import ResourceUpdated
from pydantic import ValidationError

from lexey_mcp.config import Settings, describe_settings_error
from lexey_mcp.events.feed import EventFeed, EventOptions
from lexey_mcp.events.model import TestMark, parse_event
from lexey_mcp.events.store import DAY, RedisEventStore
from lexey_mcp.paths import WEBHOOK_PATH
from lexey_mcp.server import ServerOptions, build_server
from tests.events.conftest import Heard, events_settings
from tests.events.helpers import body_of, escalation, post
from tests.events.test_mcp import ESCALATIONS, WAIT, LegacyInbox, subscribe
from tests.processes import free_port
from tests.redis_server import redis_server
from tests.waiting import wait_until


@pytest.mark.e2e
async def test_a_webhook_to_replica_b_notifies_listeners_on_replica_a(tmp_path: Path, anyio_backend: str) -> None:
    with redis_server(tmp_path) as redis:
        port_a, port_b = free_port(), free_port()
        replica_a = build_server(
            events_settings(tmp_path / "a", redis_url=redis.url),
            ServerOptions(events=EventOptions(webhook_port=port_a)),
        )
        replica_b = build_server(
            events_settings(tmp_path / "b", redis_url=redis.url),
            ServerOptions(events=EventOptions(webhook_port=port_b)),
        )
        inbox = LegacyInbox()
        payload = escalation()
        async with (
            Client(replica_a) as on_a,
            Client(replica_a, mode="legacy", message_handler=inbox) as legacy_on_a,
            Client(replica_b) as on_b,
            httpx2.AsyncClient(trust_env=False, timeout=10) as http,
        ):
            await subscribe(legacy_on_a, ESCALATIONS)
            async with on_a.listen(resource_subscriptions=[ESCALATIONS]) as sub:
                response = await post(http, f"http://127.0.0.1:{port_b}{WEBHOOK_PATH}", body_of(payload))
                assert response.status_code == 200
                with anyio.fail_after(WAIT):
                    event = await sub.__anext__()
            assert event == ResourceUpdated(uri=ESCALATIONS)
            assert await inbox.wait_for(1) == [ESCALATIONS]
            again = await post(http, f"http://127.0.0.1:{port_a}{WEBHOOK_PATH}", body_of(payload))
            assert again.status_code == 200  # a redelivery to the other replica is still one event
            for client in (on_a, on_b):
                listed = await client.call_tool("list_escalations", {})
                assert listed.structured_content is not None
                assert [e["conversation_id"] for e in listed.structured_content["escalations"]] == [
                    payload["conversation"]["id"]
                ]
    assert not (tmp_path / "a" / "events.sqlite3").exists()  # with Redis, nothing on disk


@pytest.mark.e2e
async def test_redis_going_away_and_coming_back(tmp_path: Path, anyio_backend: str) -> None:
    with redis_server(tmp_path) as redis:
        port, sqlite_port = free_port(), free_port()
        server = build_server(
            events_settings(tmp_path / "r", redis_url=redis.url), ServerOptions(events=EventOptions(webhook_port=port))
        )
        url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        async with (
            EventFeed(events_settings(tmp_path / "s"), EventOptions(webhook_port=sqlite_port)) as on_sqlite,
            Client(server) as client,
            httpx2.AsyncClient(trust_env=False, timeout=10) as http,
            client.listen(resource_subscriptions=[ESCALATIONS]) as sub,
        ):
            assert (await post(http, url, body_of(escalation()))).status_code == 200
            with anyio.fail_after(WAIT):
                await sub.__anext__()

            redis.stop()
            refused = await post(http, url, body_of(escalation()))
            assert refused.status_code == 503  # Lexey retries a 5xx
            assert "unavailable" in refused.json()["error"]
            listed = await client.call_tool("list_escalations", {})
            assert listed.is_error
            text = getattr(listed.content[0], "text", "")
            assert f"the event store (Redis at 127.0.0.1:{redis.port}/0) is unreachable" in text
            sqlite_url = f"http://127.0.0.1:{sqlite_port}{WEBHOOK_PATH}"
            assert (await post(http, sqlite_url, body_of(escalation()))).status_code == 200  # SQLite path unaffected
            assert len(await on_sqlite.escalations()) == 1

            redis.start()
            heard = None
            with anyio.fail_after(15):
                while heard is None:  # until the replica has re-subscribed to the channel
                    assert (await post(http, url, body_of(escalation()))).status_code == 200
                    with anyio.move_on_after(0.5):
                        heard = await sub.__anext__()
            assert heard == ResourceUpdated(uri=ESCALATIONS)
            listed = await client.call_tool("list_escalations", {})
            assert not listed.is_error


@pytest.mark.e2e
async def test_redis_store_redelivery_and_retention(tmp_path: Path, anyio_backend: str) -> None:
    with redis_server(tmp_path) as redis:
        store = RedisEventStore(redis.url, retention_days=30, prefix="lexey-mcp:test:")
        now = time.time()
        old, recent = escalation(minutes=1), escalation(minutes=2)
        assert await store.add(parse_event(recent, now))
        assert not await store.add(parse_event(recent, now))
        assert await store.add(parse_event(old, now - 29.9 * DAY))  # expires in Redis a few hours from now
        assert len(await store.escalations(None, 10)) == 2
        await store.redis.delete(f"lexey-mcp:test:event:{parse_event(old, now).key}")  # as its expiry will
        assert [e.conversation_id for e in await store.escalations(None, 10)] == [recent["conversation"]["id"]]
        assert await store.redis.zcard("lexey-mcp:test:escalations") == 1  # the index forgot it too
        await store.aclose()


@pytest.mark.e2e
async def test_a_test_runs_mark_made_on_one_replica_is_read_on_another_and_expires(
    tmp_path: Path, anyio_backend: str
) -> None:
    with redis_server(tmp_path) as redis:
        marking, listing = (RedisEventStore(redis.url, retention_days=30, prefix="lexey-mcp:test:") for _ in range(2))
        ours, theirs = (escalation(minutes=m)["conversation"]["id"] for m in (1, 2))
        await marking.mark(ours, TestMark(suite="refunds", case="big refund"))
        assert await listing.marks([ours, theirs]) == {ours: TestMark(suite="refunds", case="big refund")}
        ttl = await listing.redis.ttl(f"lexey-mcp:test:test-run:{ours}")
        assert 29 * DAY < ttl <= 30 * DAY  # forgotten with the retention period, like the events
        await marking.aclose()
        await listing.aclose()


@pytest.mark.e2e
async def test_past_its_size_cap_the_redis_store_drops_the_oldest_events_first(
    tmp_path: Path, anyio_backend: str
) -> None:
    # It had no cap: a signed flood filled Redis. The cap and its count are shared by the replicas.
    with redis_server(tmp_path) as redis:
        replicas = [RedisEventStore(redis.url, 30, "lexey-mcp:test:", max_mb=0.01) for _ in range(2)]  # ~10 KiB
        heard: list[int] = []
        for store in replicas:
            store.on_evict = heard.append
        now = time.time()
        sent = [escalation(minutes=i, reason="x" * 1000) for i in range(30)]  # ~1.6 KiB each
        for i, payload in enumerate(sent):
            assert await replicas[i % 2].add(parse_event(payload, now + i))
        kept = [e.conversation_id for e in await replicas[0].escalations(None, 100)]
        assert sum(store.evicted for store in replicas) == sum(heard) == 30 - len(kept)
        assert 0 < len(kept) < 10
        assert kept == [p["conversation"]["id"] for p in reversed(sent)][: len(kept)]  # the newest stay
        r = replicas[0].redis
        records = [record for record in await r.mget(await r.keys("lexey-mcp:test:event:*")) if record is not None]
        assert len(records) == len(kept)  # the evicted records are gone, not just unlisted
        assert int(await r.get("lexey-mcp:test:bytes") or -1) == sum(map(len, records)) <= 10 * 1024
        # Past the retention period the records expire by themselves, and the count forgets them.
        await replicas[0].prune(now + 40 * DAY)
        assert int(await r.get("lexey-mcp:test:bytes") or -1) == 0
        assert await r.hlen("lexey-mcp:test:sizes") == await r.zcard("lexey-mcp:test:received") == 0
        for store in replicas:
            await store.aclose()


@pytest.mark.e2e
async def test_concurrent_webhooks_through_redis_none_lost_or_duplicated(tmp_path: Path, anyio_backend: str) -> None:
    with redis_server(tmp_path) as redis:
        settings = events_settings(tmp_path, redis_url=redis.url)
        async with (
            EventFeed(settings, EventOptions(webhook_port=0)) as replica_a,
            EventFeed(settings, EventOptions(webhook_port=0)) as replica_b,
        ):
            heard = Heard()
            replica_a.bus.subscribe(heard)
            payloads = [escalation(minutes=i) for i in range(300)]
            deliveries = [body_of(p) for p in payloads] + [body_of(p) for p in payloads[::10]]
            statuses: list[int] = []
            urls = [replica_a.webhook_url, replica_b.webhook_url]
            async with httpx2.AsyncClient(trust_env=False, timeout=60) as http, anyio.create_task_group() as tg:

                async def one(n: int, body: bytes) -> None:
                    url = urls[n % 2]  # a redelivery may reach the other replica
                    assert url is not None
                    statuses.append((await post(http, url, body)).status_code)

                for n, body in enumerate(deliveries):
                    tg.start_soon(one, n, body)
            assert statuses == [200] * len(deliveries)
            assert await redis_count(replica_a) == 300
            # Every announcement was published before its 200; Redis delivers in the order it took the PUBLISHes,
            # so once a later marker arrives, every earlier announcement (and any duplicate) has arrived too.
            marker = escalation(minutes=999)
            async with httpx2.AsyncClient(trust_env=False, timeout=60) as http:
                assert urls[1] is not None
                assert (await post(http, urls[1], body_of(marker))).status_code == 200
            marker_uri = f"lexey://conversations/{marker['conversation']['id']}/messages"
            await wait_until(lambda: marker_uri in heard.uris, "the marker announced (pub/sub delivers later)")
            assert heard.uris.count(ESCALATIONS) == 301


async def redis_count(feed: EventFeed) -> int:
    store = feed.store
    assert isinstance(store, RedisEventStore)
    count: int = await store.redis.zcard(f"{store.prefix}escalations")
    return count


@pytest.mark.parametrize(
    "url", ["http://user:hunter2-password@127.0.0.1:6379/0", "redis://user:hunter2-password@127.0.0.1:sixty/0"]
)
def test_a_redis_url_that_is_not_one_stops_start_up_saying_what_is_accepted_without_it(url: str) -> None:
    """Refused with the settings (exit 2 at start-up, as every malformed setting), not found out by the first
    webhook; the URL, which may hold a password, is not shown."""
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, redis_url=url)
    assert describe_settings_error(refused.value) == (
        "LEXEY_REDIS_URL must be a redis://, rediss:// or unix:// URL (redis://host:port/db); "
        "for example LEXEY_REDIS_URL=redis://localhost:6379/0."
    )


@pytest.mark.e2e
async def test_deployments_sharing_a_redis_keep_their_escalations_apart(tmp_path: Path, anyio_backend: str) -> None:
    # Each deployment's keys and channel sit under its own namespace: by default a hash of its webhook secret, or
    # LEXEY_REDIS_NAMESPACE. A second deployment with another secret listed the first one's customers.
    with redis_server(tmp_path) as redis:
        ports = [free_port() for _ in range(3)]
        ours = build_server(
            events_settings(tmp_path / "a", redis_url=redis.url),
            ServerOptions(events=EventOptions(webhook_port=ports[0])),
        )
        theirs = build_server(
            events_settings(tmp_path / "b", redis_url=redis.url, webhook_secret="another-deployment-secret-0123"),
            ServerOptions(events=EventOptions(webhook_port=ports[1])),
        )
        named = build_server(
            events_settings(tmp_path / "c", redis_url=redis.url, redis_namespace="shop-eu"),
            ServerOptions(events=EventOptions(webhook_port=ports[2])),
        )
        async with (
            Client(ours) as our_client,
            Client(theirs) as their_client,
            Client(named) as named_client,
            httpx2.AsyncClient(trust_env=False, timeout=10) as http,
        ):
            sent = await post(http, f"http://127.0.0.1:{ports[0]}{WEBHOOK_PATH}", body_of(escalation()))
            assert sent.status_code == 200
            listed = [
                await client.call_tool("list_escalations", {}) for client in (our_client, their_client, named_client)
            ]
        import redis as redis_py

        with redis_py.Redis.from_url(redis.url) as inspect:
            keys = {key.decode() for key in inspect.keys("*")}
    counts = [len((result.structured_content or {})["escalations"]) for result in listed]
    assert counts == [1, 0, 0]
    our_prefix = events_settings(tmp_path).redis_prefix()
    assert our_prefix.startswith("lexey-mcp:")
    assert our_prefix != "lexey-mcp:"
    assert keys
    assert all(key.startswith(our_prefix) for key in keys)


def test_the_default_namespace_differs_between_deployments_and_hides_the_secret(tmp_path: Path) -> None:
    first = events_settings(tmp_path).redis_prefix()
    second = events_settings(tmp_path, webhook_secret="another-deployment-secret-0123").redis_prefix()
    assert first != second
    assert events_settings(tmp_path).redis_prefix() == first  # stable: replicas of one deployment agree
    assert events_settings(tmp_path, redis_namespace="shop-eu").redis_prefix() == "lexey-mcp:shop-eu:"
    assert "whsec" not in first
