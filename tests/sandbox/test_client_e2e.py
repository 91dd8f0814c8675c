"""`LexeyClient` against the sandbox: the vendor's E2E workflow and how faults fold into results."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
import pytest

from lexey_mcp.client import LexeyClient
from lexey_mcp.config import Settings
from lexey_mcp.sandbox import Fault, Sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
async def lexey(sb: Sandbox) -> AsyncIterator[LexeyClient]:
    env = sb.env()
    settings = Settings(
        customer_key=env["LEXEY_CUSTOMER_KEY"],
        management_key=env["LEXEY_MANAGEMENT_KEY"],
        lexi_api_key=env["LEXI_API_KEY"],
        base_url=env["LEXEY_BASE_URL"],
        lexi_base_url=env["LEXI_BASE_URL"],
        _env_file=None,
    )
    async with LexeyClient(settings) as client:
        yield client


async def test_e2e_workflow(sb: Sandbox, lexey: LexeyClient) -> None:
    manage = await lexey.management.create_conversation()
    article = await lexey.management.send_message(
        manage, "Add a knowledge article about pricing: Pro is $12/month with unlimited projects."
    )
    assert article.outcome == "complete"
    await lexey.management.send_message(manage, "Always escalate if a customer mentions refunds")
    customer = await lexey.customer.create_conversation()
    answer = await lexey.customer.send_message(customer, "How much is Pro?")
    assert answer.text.endswith("Pro is $12/month with unlimited projects.")
    assert answer.missing_event_ids == []
    refund = await lexey.customer.send_message(customer, "Please refund me")
    assert refund.conversation_status == "escalated"
    assert refund.status_events == ["escalated"]
    report = await lexey.management.send_message(manage, "How have we performed over the last 7 days?")
    assert "1 conversation, 2 customer messages, 1 escalation (escalation rate 100%)" in report.text
    history = await lexey.customer.get_messages(customer)
    assert [m.role for m in history] == ["user", "assistant", "user", "assistant"]


async def test_hostile_framing_still_folds(sb: Sandbox, lexey: LexeyClient) -> None:
    conversation_id = await lexey.customer.create_conversation()
    clean = await lexey.customer.send_message(conversation_id, "hello")
    sb.inject(Fault(chunking="byte", bom=True, line_ending="crlf", comments=True, id_gaps=True))
    hostile = await lexey.customer.send_message(conversation_id, "hello")
    assert hostile.text == clean.text
    assert hostile.outcome == "complete"
    assert hostile.missing_event_ids == [3, 6, 9]


async def test_drop_and_error_fold(sb: Sandbox, lexey: LexeyClient) -> None:
    conversation_id = await lexey.customer.create_conversation()
    sb.inject(Fault(drop_after=3))
    dropped = await lexey.customer.send_message(conversation_id, "hello")
    assert (dropped.outcome, dropped.text) == ("partial", "Hi! How can ")
    sb.inject(Fault(target="lexi", error_at=1))
    failed = await lexey.lexi_chat("Who is Maria?")
    assert failed.outcome == "error"
    assert failed.error is not None
    assert failed.error.message == "Lexi hit an internal error while generating this response"


async def test_lexi_429_retry_is_charged_once(sb: Sandbox, lexey: LexeyClient) -> None:
    sb.inject(Fault(target="lexi", status=429, retry_after="0"))
    result = await lexey.lexi_chat("Who is Maria?")
    assert result.outcome == "complete"
    assert result.credits_remaining == 5000 - 2
    assert result.rate_limit is not None
    assert result.rate_limit.limit == 1000
    assert [r.path.endswith("/lexi/chat/stream") for r in sb.requests_log] == [True, True]
    assert sb.last_headers["lexi"]["idempotency-key"] == result.idempotency_key


async def test_cancelled_call_closes_the_upstream_stream(sb: Sandbox, lexey: LexeyClient) -> None:
    conversation_id = await lexey.customer.create_conversation()
    sb.inject(Fault(stall_after=1, stall_seconds=30))
    with anyio.move_on_after(0.2):
        await lexey.customer.send_message(conversation_id, "hello")
    started = time.monotonic()
    assert await sb.wait_for_stream_closed(0.5) == "disconnected"
    assert time.monotonic() - started < 0.5
