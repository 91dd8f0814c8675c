"""The `/_sandbox` admin endpoints and the observability surface (stats, last headers, request log, logs)."""

from __future__ import annotations

import logging
import uuid

import httpx2
import pytest

from lexey_mcp.sandbox import Sandbox

from .helpers import CUSTOMER, LEXI, conversation, lexi, send

pytestmark = pytest.mark.anyio


async def test_faults_endpoint_queue_list_clear(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    admin = f"{sb.url}/_sandbox/faults"
    single = await client.post(admin, json={"target": "customer", "status": 503, "retry_after": "1"})
    assert single.status_code == 201
    assert single.json() == {"queued": 1, "pending": 1}
    many = await client.post(admin, json=[{"target": "lexi", "raw_chunks": ["\xff"], "times": 2}, {"bom": True}])
    assert many.json() == {"queued": 2, "pending": 3}
    listed = (await client.get(admin)).json()["faults"]
    assert listed == [
        {"target": "customer", "status": 503, "retry_after": "1", "remaining": 1},
        {"target": "lexi", "times": 2, "raw_chunks": ["\xff"], "remaining": 2},
        {"bom": True, "remaining": 1},
    ]
    conversation_id = await conversation(client, sb)
    applied = await send(client, sb, conversation_id, "hi")
    assert (applied.status_code, applied.headers["retry-after"]) == (503, "1")
    assert (await lexi(client, sb, {"message": "hi"})).content == b"\xff"
    assert (await client.get(admin)).json()["faults"][0]["remaining"] == 1
    assert (await client.delete(admin)).json() == {"cleared": 2}
    assert (await client.get(admin)).json() == {"faults": []}
    assert (await send(client, sb, conversation_id, "hi")).status_code == 200


@pytest.mark.parametrize(
    "body",
    [b'{"status": 200}', b'{"target": "everything"}', b'{"html_error": true}', b'{"nope": 1}', b"not json"],
)
async def test_faults_endpoint_rejects_invalid(sb: Sandbox, client: httpx2.AsyncClient, body: bytes) -> None:
    response = await client.post(f"{sb.url}/_sandbox/faults", content=body)
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid fault"
    assert isinstance(response.json()["details"], list)
    assert len(sb.store.faults) == 0


async def test_stats_endpoint(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id = await conversation(client, sb)
    await send(client, sb, conversation_id, "hi")
    key = str(uuid.uuid4())
    await lexi(client, sb, {"message": "hi"}, {"Idempotency-Key": key})
    stats = (await client.get(f"{sb.url}/_sandbox/stats")).json()
    assert {k: stats[k] for k in ("requests", "streams_started", "streams_completed", "open_streams")} == {
        "requests": 3,
        "streams_started": 2,
        "streams_completed": 2,
        "open_streams": 0,
    }
    assert stats["streams_disconnected"] == 0
    assert stats["faults_pending"] == 0
    assert stats["last_headers"]["lexi"]["authorization"] == "Bearer wbk_…"
    assert stats["last_headers"]["lexi"]["idempotency-key"] == key
    assert stats["last_headers"]["customer"]["authorization"] == "Bearer lxc_…"
    assert "test_lexi" not in str(stats)
    assert "test_customer" not in str(stats)
    assert stats["requests_log"][0] == ["POST", "/api/v1/customer/conversations", "customer"]
    assert sb.stats.requests == 3  # the admin calls are not counted


async def test_requests_log_and_last_headers(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    await client.post(f"{sb.base_url}/customer/conversations")
    await client.post(f"{sb.base_url}/customer/conversations", headers={"Authorization": "Bearer junk"})
    await client.post(f"{sb.base_url}/management/conversations", headers={"Authorization": "Bearer lxm_x"})
    await lexi(client, sb, {"message": "hi"})
    assert sb.requests_log == [
        ("POST", "/api/v1/customer/conversations", None),
        ("POST", "/api/v1/customer/conversations", "unknown"),
        ("POST", "/api/v1/management/conversations", "management"),
        ("POST", "/functions/v1/api-gateway/v1/lexi/chat/stream", "lexi"),
    ]
    assert sb.last_headers["customer"]["authorization"] == "Bearer junk"
    assert sb.last_headers["lexi"]["authorization"] == LEXI["Authorization"]
    assert "idempotency-key" not in sb.last_headers["lexi"]


async def test_logs_never_contain_keys(
    sb: Sandbox, client: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="lexey_mcp.sandbox")
    conversation_id = await conversation(client, sb)
    await send(client, sb, conversation_id, "hi")
    await lexi(client, sb, {"message": "hi"})
    lines = [r.getMessage() for r in caplog.records if r.name == "lexey_mcp.sandbox"]
    assert any("/customer/conversations" in line and "key=customer" in line for line in lines)
    assert all("lxc_test" not in line and "wbk_test" not in line for line in lines)
    assert CUSTOMER["Authorization"] not in caplog.text
