"""The receiver in stdio mode, as hosts launch lexey-mcp: `--webhook-port`, and `--sandbox` wiring itself."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters

from lexey_mcp.paths import WEBHOOK_PATH
from tests.events.helpers import SECRET, body_of, escalation, post
from tests.processes import clean_env, free_port

pytestmark = pytest.mark.e2e

SERVER = [sys.executable, "-m", "lexey_mcp"]


async def test_stdio_receives_on_its_webhook_port(tmp_path: Path, anyio_backend: str) -> None:
    port = free_port()
    env = clean_env(LEXEY_WEBHOOK_SECRET=SECRET, LEXEY_STATE_DIR=str(tmp_path))
    params = StdioServerParameters(command=SERVER[0], args=[*SERVER[1:], "--webhook-port", str(port)], env=env)
    payload = escalation()
    async with Client(params) as client, httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        await client.list_tools()  # the server is up, and so is its receiver
        response = await post(http, f"http://127.0.0.1:{port}{WEBHOOK_PATH}", body_of(payload))
        assert response.status_code == 200
        listed = await client.call_tool("list_escalations", {"since": "2026-11-30T08:00:00Z"})
    assert listed.structured_content is not None
    assert [e["conversation_id"] for e in listed.structured_content["escalations"]] == [payload["conversation"]["id"]]
    assert (tmp_path / "events.sqlite3").exists()


async def test_stdio_sandbox_feeds_its_own_escalations(tmp_path: Path, anyio_backend: str) -> None:
    params = StdioServerParameters(
        command=SERVER[0], args=[*SERVER[1:], "--sandbox", "--sandbox-delay", "0"], env=clean_env(HOME=str(tmp_path))
    )
    async with Client(params) as client:
        await client.call_tool("configure_org", {"instruction": "Always escalate if a customer mentions refunds."})
        scenario = await client.call_tool("run_customer_scenario", {"messages": ["I want a refund."]})
        assert scenario.structured_content is not None
        listed = None
        with anyio.fail_after(5):
            while not (listed and listed["escalations"]):  # the webhook is delivered in the background
                listed = (await client.call_tool("list_escalations", {})).structured_content
    assert listed is not None
    assert listed["escalations"][0]["conversation_id"] == scenario.structured_content["conversation_id"]
    assert not (tmp_path / ".local").exists()  # --sandbox keeps its events in a temporary directory
