"""The sandbox's own webhooks: Lexey-shaped, signed, retried until the receiver takes them."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from pydantic import SecretStr

from lexey_mcp.events.feed import EventFeed, EventOptions
from lexey_mcp.events.model import Escalation
from lexey_mcp.paths import WEBHOOK_PATH
from lexey_mcp.sandbox import Sandbox, SandboxConfig
from tests.events.conftest import Heard, events_settings
from tests.events.helpers import SECRET
from tests.processes import clean_env, free_port
from tests.streams import CUSTOMER_KEY, MANAGEMENT_KEY
from tests.waiting import accepts, wait_until


async def _escalate(sb: Sandbox) -> str:
    async with httpx2.AsyncClient(base_url=sb.base_url, trust_env=False, timeout=10) as http:
        rule = {"message": "Always escalate if a customer mentions legal issues."}
        management = {"Authorization": f"Bearer {MANAGEMENT_KEY}"}
        customer = {"Authorization": f"Bearer {CUSTOMER_KEY}"}
        mid = (await http.post("/management/conversations", headers=management)).json()["conversationId"]
        await http.post(f"/management/conversations/{mid}/messages", json=rule, headers=management)
        cid: str = (await http.post("/customer/conversations", headers=customer)).json()["conversationId"]
        message = {"message": "This is now a legal issue."}
        (await http.post(f"/customer/conversations/{cid}/messages", json=message, headers=customer)).raise_for_status()
        await http.post(f"/customer/conversations/{cid}/messages", json=message, headers=customer)  # escalated already
        return cid


async def test_a_webhook_is_retried_until_the_receiver_is_up(
    tmp_path: Path, anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lexey_mcp.sandbox")
    port = free_port()
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    config = SandboxConfig(delay=0, webhook_url=url, webhook_secret=SecretStr(SECRET))
    async with Sandbox(config) as sb:
        cid = await _escalate(sb)  # nothing listens yet: the first attempt fails
        await wait_until(
            lambda: any("webhook attempt 1 failed" in r.getMessage() for r in caplog.records), "a failed attempt"
        )
        assert sb.webhooks is not None
        assert sb.webhooks.delivered == 0
        heard = Heard()
        async with EventFeed(events_settings(tmp_path), EventOptions(webhook_port=port)) as feed:
            feed.bus.subscribe(heard)
            await wait_until(lambda: sb.webhooks is not None and sb.webhooks.delivered >= 1, "the webhook delivered")
            [escalation] = await feed.escalations()
    assert heard.uris == ["lexey://escalations", f"lexey://conversations/{cid}/messages"]
    assert escalation.conversation_id == cid
    assert escalation.reason == "The customer mentioned legal issues"
    assert escalation.status == "escalated"
    assert [m.role for m in escalation.messages] == ["user", "assistant"]  # as the conversation stood
    assert sb.webhooks.delivered == 1  # one escalation, one webhook (the second message did not escalate again)
    assert sb.webhooks.failed == 0


async def test_a_wrong_secret_is_refused_and_not_kept(tmp_path: Path, anyio_backend: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    config = SandboxConfig(delay=0, webhook_url=url, webhook_secret=SecretStr("not-the-secret"))
    async with (
        EventFeed(events_settings(tmp_path), EventOptions(webhook_port=port)) as feed,
        Sandbox(config) as sb,
    ):
        assert sb.webhooks is not None
        sb.webhooks._backoff = ()
        await _escalate(sb)
        await wait_until(lambda: sb.webhooks is not None and sb.webhooks.failed >= 1, "the webhook given up")
        assert await feed.escalations() == []


@pytest.mark.e2e
async def test_lexey_mcp_sandbox_sends_webhooks_where_told(tmp_path: Path, anyio_backend: str) -> None:
    receiver_port, sandbox_port = free_port(), free_port()
    url = f"http://127.0.0.1:{receiver_port}{WEBHOOK_PATH}"
    command = [sys.executable, "-m", "lexey_mcp", "sandbox", "--port", str(sandbox_port), "--delay", "0"]
    async with EventFeed(events_settings(tmp_path), EventOptions(webhook_port=receiver_port)) as feed:
        process = subprocess.Popen(  # noqa: ASYNC220 - returns once forked
            [*command, "--webhook-url", url],
            env=clean_env(LEXEY_WEBHOOK_SECRET=SECRET),  # the secret from the environment, not the command line
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await wait_until(lambda: accepts("127.0.0.1", sandbox_port), "`lexey-mcp sandbox` accepting connections")
            sb = Sandbox(SandboxConfig(), port=sandbox_port)  # only for its URLs: the process is the sandbox
            cid = await _escalate(sb)
            found: list[Escalation] = []

            async def delivered() -> bool:  # in the background
                found[:] = await feed.escalations()
                return bool(found)

            await wait_until(delivered, "the escalation delivered to the receiver")
        finally:
            process.terminate()
            process.wait(10)
    assert [e.conversation_id for e in found] == [cid]
