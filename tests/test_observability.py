"""Operations: /healthz, /readyz, /metrics, `lexey.upstream` spans, per-key rate limits, the stream cap, JSON logs.

Tool calls go through the official `mcp.Client` (in-process) to the sandbox over loopback HTTP; the routes are
read through the server's own Starlette app; spans are captured with the OpenTelemetry SDK's in-memory exporter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.server import MCPServer
from mcp.types import CallToolResult
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from lexey_mcp import __version__
from lexey_mcp.cli import configure_logging
from lexey_mcp.client import LexeyClient
from lexey_mcp.config import Settings
from lexey_mcp.events.feed import EventOptions
from lexey_mcp.observability import (
    MemoryLimiter,
    Observer,
    Rate,
    add_readiness_checks,
    key_id,
    readiness_problems,
    tool_result_label,
)
from lexey_mcp.paths import HEALTH_PATH, MCP_PATH, METRICS_PATH, READY_PATH, WEBHOOK_PATH
from lexey_mcp.sandbox import Fault, Sandbox
from lexey_mcp.server import ServerOptions, build_server
from tests.conftest import sandbox_settings_for
from tests.events.conftest import events_settings
from tests.events.helpers import body_of, escalation, post
from tests.processes import free_port, http_server, mcp_client
from tests.reading import text_of
from tests.redis_server import redis_server
from tests.streams import ALL_KEYS, CUSTOMER_KEY
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

MESSAGE = "Where is my parcel 7Gx?"  # distinctive: must appear in no label and no attribute


@asynccontextmanager
async def http_to(server: MCPServer[Any], host: str = "127.0.0.1") -> AsyncIterator[httpx2.AsyncClient]:
    """The server's HTTP app, reached as if its listener were bound to `host` (the ASGI scope's server)."""
    app = server.streamable_http_app(streamable_http_path=MCP_PATH)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url=f"http://{host}:8000") as http:
        yield http


class Scrape:
    """One /metrics answer, parsed back with prometheus_client's parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def label_values(self) -> set[str]:
        return {value for _, labels in self.samples for _, value in labels}


async def opened(sandbox: Sandbox) -> bool:
    return sandbox.stats.open_streams == 1


async def scrape(server: MCPServer[Any]) -> Scrape:
    async with http_to(server) as http:
        response = await http.get(METRICS_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.text)


# Health and readiness


async def test_healthz_answers_without_auth_even_when_mcp_requires_a_token(sandbox: Sandbox) -> None:
    server = build_server(sandbox_settings_for(sandbox), ServerOptions(auth_token="tok_" + "x" * 30))
    async with http_to(server) as http:
        health = await http.get(HEALTH_PATH)
        mcp = await http.post(MCP_PATH, json={})
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "version": __version__}
    assert mcp.status_code == 401  # the MCP endpoint itself stays behind the bearer


async def test_readyz_ready_with_valid_keys_and_with_no_keys(sandbox: Sandbox) -> None:
    for settings in (sandbox_settings_for(sandbox), Settings(_env_file=None)):
        async with http_to(build_server(settings)) as http:
            ready = await http.get(READY_PATH)
        assert (ready.status_code, ready.json()) == (200, {"status": "ready", "problems": []})


async def test_readyz_names_a_malformed_key_without_showing_it(sandbox: Sandbox) -> None:
    wrong = "lxm_" + CUSTOMER_KEY[4:]  # a management key where the customer key belongs
    async with http_to(build_server(sandbox_settings_for(sandbox, customer_key=wrong))) as http:
        ready = await http.get(READY_PATH)
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not ready"
    assert len(body["problems"]) == 1
    assert body["problems"][0].startswith("keys: LEXEY_CUSTOMER_KEY must be")
    assert CUSTOMER_KEY[4:12] not in ready.text


@pytest.mark.e2e
async def test_readyz_follows_redis(sandbox: Sandbox, tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        settings = sandbox_settings_for(sandbox, redis_url=redis.url)
        observer = Observer(settings)
        add_readiness_checks(observer, settings, ["customer", "management", "lexi"])
        try:
            assert await readiness_problems(observer) == []
            redis.stop()
            assert await readiness_problems(observer) == ["redis: failed (ConnectionError)"]
            redis.start()
            assert await readiness_problems(observer) == []
        finally:
            await observer.aclose()


@pytest.mark.e2e
async def test_an_evicting_redis_is_reported_by_readyz_and_at_start(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # With allkeys-lru, Redis evicted the rate-limit counter and the escalation index, and nobody was told.
    with redis_server(tmp_path) as redis:
        import redis as redis_py

        with redis_py.Redis.from_url(redis.url) as admin:
            admin.config_set("maxmemory-policy", "allkeys-lru")
        settings = sandbox_settings_for(sandbox, redis_url=redis.url)
        caplog.set_level("WARNING", "lexey_mcp.observability")
        server = build_server(settings)
        async with Client(server), http_to(server) as http:
            ready = await http.get(READY_PATH)
    problem = (
        "its maxmemory-policy is allkeys-lru: under memory pressure Redis drops rate-limit counters, escalations "
        "and used confirmations silently; set maxmemory-policy noeviction"
    )
    assert ready.status_code == 503
    assert ready.json()["problems"] == [f"redis: {problem}"]
    assert [r.getMessage() for r in caplog.records if r.name == "lexey_mcp.observability"] == [f"Redis: {problem}"]


async def test_readiness_is_a_list_of_named_checks_others_extend(sandbox: Sandbox) -> None:
    observer = Observer(sandbox_settings_for(sandbox))

    async def store() -> str | None:
        return "state store unreachable"

    async def slow() -> str | None:
        await anyio.sleep(60)  # a check that never answers in time is what this tests
        return None

    observer.readiness["state_store"] = store
    observer.readiness["slow"] = slow
    problems = await readiness_problems(observer, per_check=0.05)
    assert problems == ["state_store: state store unreachable", "slow: no answer within 0.05 s"]


# /metrics access


async def test_metrics_without_token_only_on_a_loopback_listener(sandbox: Sandbox) -> None:
    server = build_server(sandbox_settings_for(sandbox))
    for host, expected in (("127.0.0.1", 200), ("[::1]", 200), ("10.20.30.40", 404), ("203.0.113.9", 404)):
        async with http_to(server, host) as http:
            assert (await http.get(METRICS_PATH)).status_code == expected, host


async def test_metrics_with_token_require_that_bearer_anywhere(sandbox: Sandbox) -> None:
    token = "mtok_5fHq8WzLr2KcV9xP"
    server = build_server(sandbox_settings_for(sandbox, metrics_token=token))
    async with http_to(server, "10.20.30.40") as http:
        assert (await http.get(METRICS_PATH)).status_code == 401
        assert (await http.get(METRICS_PATH, headers={"Authorization": "Bearer wrong"})).status_code == 401
        ok = await http.get(METRICS_PATH, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    assert "lexey_mcp_tool_calls_total" in ok.text or "# HELP lexey_mcp_tool_calls" in ok.text


# Every metric, moved by real calls


async def test_complete_call_moves_call_upstream_and_stream_metrics(sandbox: Sandbox) -> None:
    server = build_server(sandbox_settings_for(sandbox))
    async with Client(server) as client:
        result = await client.call_tool("send_customer_message", {"message": MESSAGE})
    assert result.structured_content is not None
    cid = result.structured_content["conversation_id"]
    m = await scrape(server)
    assert m("lexey_mcp_tool_calls_total", tool="send_customer_message", result="complete") == 1
    assert m("lexey_mcp_tool_call_duration_seconds_count", tool="send_customer_message") == 1
    assert m("lexey_mcp_tool_call_duration_seconds_sum", tool="send_customer_message") > 0
    assert m("lexey_mcp_upstream_requests_total", api="customer", status="201") == 1  # create
    assert m("lexey_mcp_upstream_requests_total", api="customer", status="200") == 1  # message
    assert m("lexey_mcp_stream_events_total", api="customer") == result.structured_content["events_received"] > 0
    assert m("lexey_mcp_streams_active", api="customer") == 0
    assert m("lexey_mcp_retries_total", api="customer") == 0
    assert m("lexey_mcp_rate_limited_total") == 0
    for value in m.label_values():  # no key, conversation id or message in any label
        assert value not in (*ALL_KEYS, cid, MESSAGE)
    for secret in (*ALL_KEYS, cid, MESSAGE):
        assert secret not in m.text


async def test_stream_faults_move_partial_error_and_tool_error(sandbox: Sandbox) -> None:
    server = build_server(sandbox_settings_for(sandbox))
    async with Client(server) as client:
        sandbox.inject(Fault(target="customer", end_without_done=True))
        partial = await client.call_tool("send_customer_message", {"message": "hello"})
        sandbox.inject(Fault(target="customer", error_at=1))
        error = await client.call_tool("send_customer_message", {"message": "hello"})
        refused = await client.call_tool("get_conversation_messages", {"conversation_id": str(uuid.uuid4())})
    assert partial.structured_content is not None
    assert partial.structured_content["outcome"] == "partial"
    assert error.structured_content is not None
    assert error.structured_content["outcome"] == "error"
    assert refused.is_error
    m = await scrape(server)
    assert m("lexey_mcp_tool_calls_total", tool="send_customer_message", result="partial") == 1
    assert m("lexey_mcp_tool_calls_total", tool="send_customer_message", result="error") == 1
    assert m("lexey_mcp_tool_calls_total", tool="get_conversation_messages", result="tool_error") == 1
    assert m("lexey_mcp_partial_results_total", api="customer", reason="ended_without_done") == 1
    assert m("lexey_mcp_upstream_requests_total", api="customer", status="404") == 1


async def test_retries_count_each_resend_and_each_status(sandbox: Sandbox) -> None:
    server = build_server(sandbox_settings_for(sandbox))
    sandbox.inject(Fault(target="lexi", status=503, retry_after="0", times=2))
    async with Client(server) as client:
        result = await client.call_tool("lexi_chat", {"message": "Who is our biggest client?"})
    assert result.structured_content is not None
    assert result.structured_content["outcome"] == "complete"
    m = await scrape(server)
    assert m("lexey_mcp_retries_total", api="lexi") == 2
    assert m("lexey_mcp_upstream_requests_total", api="lexi", status="503") == 2
    assert m("lexey_mcp_upstream_requests_total", api="lexi", status="200") == 1
    assert m("lexey_mcp_tool_calls_total", tool="lexi_chat", result="complete") == 1


async def test_connection_failures_are_counted_without_a_status(sandbox: Sandbox) -> None:
    settings = sandbox_settings_for(sandbox, base_url="http://127.0.0.1:9/api/v1", max_retries=1, max_retry_wait=0)
    server = build_server(settings)
    async with Client(server) as client:
        result = await client.call_tool("create_conversation", {})
    assert result.is_error
    m = await scrape(server)
    assert m("lexey_mcp_upstream_requests_total", api="customer", status="connect_error") == 2
    assert m("lexey_mcp_retries_total", api="customer") == 1


async def test_streams_active_counts_open_streams(sandbox: Sandbox) -> None:
    server = build_server(sandbox_settings_for(sandbox))
    sandbox.inject(Fault(target="customer", stall_after=1, stall_seconds=30))
    async with Client(server) as client, anyio.create_task_group() as tg:
        tg.start_soon(client.call_tool, "send_customer_message", {"message": "hello"})
        await wait_until(lambda: active(server, 1), "one stream active on the gauge")
        tg.cancel_scope.cancel()
    await wait_until(lambda: active(server, 0), "no stream active on the gauge")


async def active(server: MCPServer[Any], streams: int) -> bool:
    return (await scrape(server))("lexey_mcp_streams_active", api="customer") == streams


async def test_rate_limited_calls_are_counted_and_send_nothing(sandbox: Sandbox) -> None:
    server = build_server(sandbox_settings_for(sandbox, rate_limit="2/hour"))
    async with Client(server) as client:
        first = await client.call_tool("create_conversation", {})
        assert first.structured_content is not None
        cid = first.structured_content["conversation_id"]
        await client.call_tool("get_conversation_messages", {"conversation_id": cid})  # same key, another tool
        before = sandbox.stats.requests
        refused = await client.call_tool("send_customer_message", {"message": "hello", "conversation_id": cid})
        assert sandbox.stats.requests == before  # nothing sent upstream
        other_key = await client.call_tool("configure_org", {"instruction": "How have we performed this week?"})
    assert refused.is_error
    assert "Rate limit reached for this customer key: 2/hour tool calls (LEXEY_MCP_RATE_LIMIT)" in text_of(refused)
    retry = re.search(r"Nothing was sent upstream\. Retry in (\d+) s\.$", text_of(refused))
    assert retry is not None
    assert 3000 < int(retry[1]) <= 3600  # the hour's window opened at the first call, moments ago
    assert not other_key.is_error  # the management key has its own budget
    m = await scrape(server)
    assert m("lexey_mcp_rate_limited_total") == 1
    assert m("lexey_mcp_tool_calls_total", tool="send_customer_message", result="tool_error") == 1


async def test_history_resource_reads_count_against_the_key(sandbox: Sandbox) -> None:
    # Reads went upstream unlimited after the key's budget was spent (20 of 20).
    server = build_server(sandbox_settings_for(sandbox, rate_limit="3/hour"))
    async with Client(server) as client:
        created = await client.call_tool("create_conversation", {})
        assert created.structured_content is not None
        cid = created.structured_content["conversation_id"]
        uri = f"lexey://conversations/{cid}/messages"
        await client.read_resource(uri)
        await client.read_resource(uri)
        before = _history_requests(sandbox, cid)
        with pytest.raises(MCPError, match=r"Rate limit reached for this customer key: 3/hour tool calls"):
            await client.read_resource(uri)
        assert _history_requests(sandbox, cid) == before  # nothing sent upstream
        escalations = await client.read_resource("lexey://escalations")  # served here, not upstream: not counted
    assert escalations.contents
    m = await scrape(server)
    assert m("lexey_mcp_rate_limited_total") == 1


async def test_every_webhook_delivery_is_counted_by_result(tmp_path: Path) -> None:
    port = free_port()
    server = build_server(events_settings(tmp_path), ServerOptions(events=EventOptions(webhook_port=port)))
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    first = body_of(escalation())
    async with Client(server), httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        assert (await post(http, url, first)).status_code == 200
        assert (await post(http, url, first)).status_code == 200  # a redelivery
        assert (await post(http, url, body_of(escalation()))).status_code == 200
        assert (await post(http, url, first, secret="wrong")).status_code == 401
        assert (await post(http, url, b"{not json")).status_code == 400
        m = await scrape(server)
    assert m("lexey_mcp_webhooks_received_total", result="accepted") == 2
    assert m("lexey_mcp_webhooks_received_total", result="duplicate") == 1
    assert m("lexey_mcp_webhooks_received_total", result="bad_signature") == 1
    assert m("lexey_mcp_webhooks_received_total", result="malformed") == 1


@pytest.mark.parametrize("store", ["sqlite", pytest.param("redis", marks=pytest.mark.e2e)])
async def test_events_evicted_past_the_store_cap_are_counted(tmp_path: Path, store: str) -> None:
    port = free_port()
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(tmp_path)).url if store == "redis" else None
        settings = events_settings(tmp_path, event_store_max_mb=0.01, redis_url=redis_url)
        server = build_server(settings, ServerOptions(events=EventOptions(webhook_port=port)))
        listed, m = await post_twenty_escalations(server, f"http://127.0.0.1:{port}{WEBHOOK_PATH}")
    assert listed.structured_content is not None
    kept = len(listed.structured_content["escalations"])
    assert m("lexey_mcp_events_evicted_total") == 20 - kept > 0


async def post_twenty_escalations(server: MCPServer[Any], url: str) -> tuple[CallToolResult, Scrape]:
    async with Client(server) as client, httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        for n in range(20):  # ~1.6 KiB each, against a cap of ~10 KiB
            assert (await post(http, url, body_of(escalation(minutes=n, reason="x" * 1000)))).status_code == 200
        listed = await client.call_tool("list_escalations", {"limit": 100})
        return listed, await scrape(server)


async def test_observe_off_records_nothing(sandbox: Sandbox) -> None:
    server = build_server(sandbox_settings_for(sandbox), ServerOptions(observe=False))
    async with Client(server) as client:
        await client.call_tool("send_customer_message", {"message": "hello"})
    m = await scrape(server)
    assert m("lexey_mcp_tool_calls_total", tool="send_customer_message", result="complete") == 0


def test_tool_result_label_reads_wire_results_and_scenarios() -> None:
    assert tool_result_label({"isError": True, "content": []}) == "tool_error"
    assert tool_result_label({"structuredContent": {"outcome": "partial"}}) == "partial"
    assert tool_result_label({"structuredContent": {"turns": [{"outcome": "complete"}, {"outcome": "error"}]}}) == (
        "error"
    )
    assert tool_result_label({"structuredContent": {"conversation_id": "x"}}) == "complete"
    assert tool_result_label(CallToolResult(content=[], is_error=True)) == "tool_error"


# Spans


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans finished during the test (the SDK provider is installed once per process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # later tests' spans go nowhere


def by_name(exported: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in exported if s.name == name]


async def test_one_upstream_span_per_request_under_the_sdk_tools_call_span(
    sandbox: Sandbox, spans: InMemorySpanExporter
) -> None:
    server = build_server(sandbox_settings_for(sandbox))
    async with Client(server) as client:
        result = await client.call_tool("send_customer_message", {"message": MESSAGE})
    assert result.structured_content is not None
    exported = spans.get_finished_spans()
    (call,) = by_name(exported, "tools/call send_customer_message")
    upstream = by_name(exported, "lexey.upstream")
    assert len(upstream) == 2  # create conversation, then the message stream
    for span in upstream:
        assert span.parent is not None
        assert call.context is not None
        assert span.parent.span_id == call.context.span_id
        assert span.context is not None
        assert span.context.trace_id == call.context.trace_id
        assert span.kind == trace.SpanKind.CLIENT
    create, stream = sorted(upstream, key=lambda s: s.start_time or 0)
    assert dict(create.attributes or {}) == {
        "lexey.api": "customer",
        "http.response.status_code": 201,
        "lexey.retry_count": 0,
        "lexey.outcome": "complete",
    }
    assert dict(stream.attributes or {}) == {
        "lexey.api": "customer",
        "http.response.status_code": 200,
        "lexey.outcome": "complete",
        "lexey.events": result.structured_content["events_received"],
        "lexey.retry_count": 0,
    }
    # Secrets and content: nowhere in any span we or the SDK made.
    everything = json.dumps([s.to_json() for s in exported])
    for secret in (*ALL_KEYS, MESSAGE, result.structured_content["text"][:20]):
        assert secret not in everything


async def test_retries_partial_and_failures_on_the_span(sandbox: Sandbox, spans: InMemorySpanExporter) -> None:
    server = build_server(sandbox_settings_for(sandbox))
    async with Client(server) as client:
        sandbox.inject(Fault(target="lexi", status=503, retry_after="0"))
        await client.call_tool("lexi_chat", {"message": "hi"})
        sandbox.inject(Fault(target="customer", end_without_done=True))
        await client.call_tool("send_customer_message", {"message": "hi"})
        sandbox.inject(Fault(target="management", status=402))
        await client.call_tool("configure_org", {"instruction": "hi"})
    upstream = sorted(by_name(spans.get_finished_spans(), "lexey.upstream"), key=lambda s: s.start_time or 0)
    lexi = next(s for s in upstream if (s.attributes or {})["lexey.api"] == "lexi")
    assert (lexi.attributes or {})["lexey.retry_count"] == 1
    assert [(e.name, dict(e.attributes or {})) for e in lexi.events] == [("retry", {"lexey.attempt": 2})]
    partial = [s for s in upstream if (s.attributes or {}).get("lexey.outcome") == "partial"]
    assert len(partial) == 1
    assert (partial[0].attributes or {})["lexey.partial_reason"] == "ended_without_done"
    (failed,) = [s for s in upstream if (s.attributes or {})["lexey.outcome"] == "failed"]
    attributes = dict(failed.attributes or {})
    assert attributes["lexey.outcome"] == "failed"
    assert attributes["error.type"] == "PaymentRequiredError"
    assert attributes["http.response.status_code"] == 402
    assert failed.status.status_code == trace.StatusCode.ERROR


async def test_traceparent_reaches_the_upstream(sandbox: Sandbox, spans: InMemorySpanExporter) -> None:
    server = build_server(sandbox_settings_for(sandbox))
    async with Client(server) as client:
        await client.call_tool("lexi_chat", {"message": "hi"})
    (span,) = by_name(spans.get_finished_spans(), "lexey.upstream")
    assert span.context is not None
    version, trace_id, parent_id, flags = sandbox.last_headers["lexi"]["traceparent"].split("-")
    assert version == "00"
    assert int(flags, 16) & 1  # sampled
    assert int(trace_id, 16) == span.context.trace_id
    assert int(parent_id, 16) == span.context.span_id  # the vendor's span joins under ours


# Rate limit exactness and the stream cap


async def _hammer(server: MCPServer[Any], cid: str, calls: int) -> list[CallToolResult]:
    results: list[CallToolResult] = []
    async with Client(server) as client, anyio.create_task_group() as tg:

        async def one() -> None:
            results.append(await client.call_tool("get_conversation_messages", {"conversation_id": cid}))

        for _ in range(calls):
            tg.start_soon(one)
    return results


async def _conversation(settings: Settings) -> str:
    async with LexeyClient(settings, trust_env=False) as direct:
        return await direct.customer.create_conversation()


def _history_requests(sandbox: Sandbox, cid: str) -> int:
    return sum(1 for r in sandbox.requests_log if r.method == "GET" and cid in r.path)


async def test_rate_limit_is_exact_under_100_concurrent_calls(sandbox: Sandbox) -> None:
    settings = sandbox_settings_for(sandbox, rate_limit="30/hour")
    cid = await _conversation(settings)
    results = await _hammer(build_server(settings), cid, 100)
    refused = [r for r in results if r.is_error]
    assert len(results) == 100
    assert len(refused) == 70
    assert all("Rate limit reached" in text_of(r) for r in refused)
    assert _history_requests(sandbox, cid) == 30


@pytest.mark.e2e
async def test_rate_limit_is_shared_and_exact_through_redis(sandbox: Sandbox, tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        settings = sandbox_settings_for(sandbox, rate_limit="30/hour", redis_url=redis.url)
        cid = await _conversation(settings)
        replicas = [build_server(settings), build_server(settings)]
        results: list[list[CallToolResult]] = [[], []]
        async with anyio.create_task_group() as tg:
            for i, replica in enumerate(replicas):

                async def run(i: int = i, replica: MCPServer[Any] = replica) -> None:
                    results[i] = await _hammer(replica, cid, 50)

                tg.start_soon(run)
        allowed = [sum(not r.is_error for r in replica_results) for replica_results in results]
        assert sum(allowed) == 30
        assert _history_requests(sandbox, cid) == 30
        # The key is stored as a hash, never as itself.
        import redis as redis_py

        with redis_py.Redis.from_url(redis.url) as inspect:
            stored = inspect.keys("*")
        assert stored == [f"{settings.redis_prefix()}rate:{key_id(settings.key('customer'))}".encode()]
        assert not any(CUSTOMER_KEY.encode() in key for key in stored)


async def test_memory_limiter_windows_reset() -> None:
    limiter = MemoryLimiter(Rate.parse("2/second"))
    assert await limiter.hit("a") is None
    assert await limiter.hit("a") is None
    wait = await limiter.hit("a")
    assert wait is not None
    assert 0 < wait <= 1
    assert await limiter.hit("b") is None  # another key
    await anyio.sleep(wait + 0.01)  # the window's end passing is what this tests
    assert await limiter.hit("a") is None


async def test_the_memory_limiter_forgets_expired_windows_as_it_goes() -> None:
    # 40,000 distinct keys cost 66 s of CPU: past 10,000 windows every new key swept them all.
    now = [0.0]
    limiter = MemoryLimiter(Rate.parse("1/second"), clock=lambda: now[0])
    for n in range(40_000):
        assert await limiter.hit(f"key-{n}") is None
        now[0] += 0.0001  # 40,000 keys within 4 s: about 10,000 windows open at a time
    assert len(limiter) <= 10_001
    assert await limiter.hit("key-39999") is not None  # its window is still open: the limit holds
    now[0] += 1.0
    assert await limiter.hit("late") is None
    assert len(limiter) == 1


@pytest.mark.parametrize("text", ["60/minute", " 5 / second ", "1/hour"])
def test_rate_parses(text: str) -> None:
    rate = Rate.parse(text)
    assert Settings(_env_file=None, rate_limit=text).rate_limit == text
    assert rate.limit >= 1


@pytest.mark.parametrize("text", ["0/minute", "60/day", "60", "minute/60", "-1/second"])
def test_bad_rate_is_refused_at_settings(text: str) -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        Settings(_env_file=None, rate_limit=text)


async def test_extra_streams_wait_then_fail_clearly(sandbox: Sandbox) -> None:
    settings = sandbox_settings_for(sandbox, max_concurrent_streams=1, stream_slot_wait=0.3)
    server = build_server(settings)
    cid = await _conversation(settings)
    sandbox.inject(Fault(target="customer", stall_after=1, stall_seconds=30))
    async with Client(server) as client, anyio.create_task_group() as tg:
        tg.start_soon(client.call_tool, "send_customer_message", {"message": "hello", "conversation_id": cid})
        await wait_until(lambda: opened(sandbox), "one upstream stream open")
        busy = await client.call_tool("send_customer_message", {"message": "again", "conversation_id": cid})
        assert sandbox.stats.streams_started == 1  # the second call sent nothing
        tg.cancel_scope.cancel()
    assert busy.is_error
    assert text_of(busy) == (
        "All 1 upstream stream slots (LEXEY_MCP_MAX_CONCURRENT_STREAMS) stayed busy for 0.3 s; nothing was sent. "
        "Try again shortly."
    )


async def test_a_waiting_stream_gets_the_freed_slot(sandbox: Sandbox) -> None:
    settings = sandbox_settings_for(sandbox, max_concurrent_streams=1, stream_slot_wait=10)
    cid = await _conversation(settings)
    sandbox.inject(Fault(target="customer", drip_seconds=0.05, times=3))
    async with Client(build_server(settings)) as client, anyio.create_task_group() as tg:
        results: list[CallToolResult] = []

        async def one() -> None:
            results.append(await client.call_tool("send_customer_message", {"message": "hi", "conversation_id": cid}))

        for _ in range(3):
            tg.start_soon(one)
    assert [r.is_error for r in results] == [False, False, False]
    assert sandbox.stats.streams_started == 3


# JSON logs


async def test_json_logs_parse_line_by_line_with_tool_and_request_id_and_no_key(
    sandbox: Sandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.raiseExceptions)
    configure_logging("INFO", list(ALL_KEYS), "json")
    try:
        async with Client(build_server(sandbox_settings_for(sandbox))) as client:
            await client.call_tool("get_conversation_messages", {"conversation_id": str(uuid.uuid4())})
        try:
            raise RuntimeError(f"boom with {CUSTOMER_KEY}")
        except RuntimeError:
            logging.getLogger("lexey_mcp.test").exception("failed using %s", CUSTOMER_KEY)
    finally:
        root.handlers[:], root.level, logging.raiseExceptions = saved
    out, err = capfd.readouterr()
    assert out == ""
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message", "tool", "request_id"} <= set(line)
    (tool_error,) = [line for line in lines if line["logger"] == "lexey_mcp.server"]
    assert tool_error["tool"] == "get_conversation_messages"
    assert tool_error["request_id"] is not None
    assert tool_error["level"] == "INFO"
    assert tool_error["message"].startswith("tool error: ")
    (failure,) = [line for line in lines if line["logger"] == "lexey_mcp.test"]
    assert failure["tool"] is None
    assert failure["message"] == "failed using [redacted]"
    assert "RuntimeError: boom with [redacted]" in failure["exception"]
    for key in ALL_KEYS:
        assert key[4:12] not in err


def test_log_format_setting() -> None:
    assert Settings(_env_file=None).log_format == "text"
    assert Settings(_env_file=None, log_format="json").log_format == "json"
    with pytest.raises(ValueError, match="log_format"):
        Settings(_env_file=None, log_format="xml")


def test_no_uuid_leak_in_key_id() -> None:
    from pydantic import SecretStr

    digest = key_id(SecretStr(CUSTOMER_KEY))
    assert len(digest) == 32
    assert CUSTOMER_KEY not in digest
    assert digest != key_id(SecretStr(str(uuid.uuid4())))


# The real thing: `lexey-mcp --transport http` in a subprocess (the CLI's wiring and uvicorn's scope are the point)


@pytest.mark.e2e
async def test_served_over_http_with_json_logs_metrics_and_health(sandbox: Sandbox, tmp_path: Path) -> None:
    token = "tok_Wq3RtY7uIo9PaS2dF"
    async with http_server(
        sandbox, tmp_path, LEXEY_LOG_FORMAT="json", LEXEY_LOG_LEVEL="INFO", LEXEY_MCP_AUTH_TOKEN=token
    ) as server:
        root = server.url.removesuffix(MCP_PATH)
        async with mcp_client(server.url, headers={"Authorization": f"Bearer {token}"}) as client:
            result = await client.call_tool("get_conversation_messages", {"conversation_id": str(uuid.uuid4())})
        assert result.is_error
        async with httpx2.AsyncClient(trust_env=False) as http:
            health = await http.get(f"{root}{HEALTH_PATH}")
            ready = await http.get(f"{root}{READY_PATH}")
            metrics = await http.get(f"{root}{METRICS_PATH}")  # loopback bind, no metrics token: served
    assert (health.status_code, ready.status_code, metrics.status_code) == (200, 200, 200)
    m = Scrape(metrics.text)
    assert m("lexey_mcp_tool_calls_total", tool="get_conversation_messages", result="tool_error") == 1
    assert m("lexey_mcp_upstream_requests_total", api="customer", status="404") == 1
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.strip()]
    (tool_error,) = [line for line in lines if line["message"].startswith("tool error: ")]
    assert tool_error["tool"] == "get_conversation_messages"
    assert tool_error["request_id"] is not None
    for secret in (*ALL_KEYS, token):
        assert secret[4:12] not in server.stderr()
