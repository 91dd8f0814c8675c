#!/usr/bin/env python3
"""`LexeyClient` without MCP: the three APIs as plain async Python.

    python examples/library_usage.py

With LEXEY_CUSTOMER_KEY, LEXEY_MANAGEMENT_KEY and LEXI_API_KEY set (environment or `.env`) it talks to the real
services, and adds a knowledge article to your org. Without them it starts the embedded sandbox and also shows
fault injection: a stream that drops mid-reply comes back as a `partial` result with the text received so far.
"""

from __future__ import annotations

import os
import sys
import uuid

import anyio

from lexey_mcp.client import LexeyClient
from lexey_mcp.config import Settings
from lexey_mcp.errors import LexeyAPIError, LexeyError
from lexey_mcp.sandbox import Fault, Sandbox, SandboxConfig


async def show(text: str) -> None:
    """`on_text` callback: called with the whole reply so far as it streams in (coalesced)."""
    print(f"\r  … {len(text)} characters received", end="", flush=True)


async def tour(client: LexeyClient) -> None:
    # Management API (lxm_ key): configure the organisation in plain language.
    admin = await client.management.create_conversation()
    configured = await client.management.send_message(
        admin, "Add a knowledge article about opening hours: We are open 9:00-17:00 CET, Monday to Friday."
    )
    print(f"management agent: {configured.text}")

    # Customer API (lxc_ key): talk to the support agent as a customer would.
    cid = await client.customer.create_conversation()
    reply = await client.customer.send_message(cid, "What are your opening hours?", on_text=show)
    print(f"\nsupport agent: {reply.text}")
    print(
        f"  outcome={reply.outcome} status={reply.conversation_status} events={reply.events_received} "
        f"missing={reply.missing_event_ids} request_id={reply.request_id}"
    )
    if reply.outcome != "complete" or "9:00" not in reply.text:
        raise RuntimeError(f"unexpected reply: {reply}")

    history = await client.customer.get_messages(cid)
    print(f"history: {[(m.role, m.content[:30]) for m in history]}")

    # Lexi (wbk_ key): the CRM assistant. Reuse `idempotency_key` to retry without a second charge.
    lexi = await client.lexi_chat("Which deals are open?", allow_tools=True)
    print(f"lexi: {lexi.text}")
    print(
        f"  tool steps={[(s.tool, s.status) for s in lexi.tool_steps]} credits left={lexi.credits_remaining} "
        f"rate limit={lexi.rate_limit} idempotency_key={lexi.idempotency_key}"
    )

    # Failures before a stream starts raise; the message says what to do and never contains a key.
    try:
        await client.customer.send_message(str(uuid.uuid4()), "Hello?")
    except LexeyAPIError as exc:
        print(f"expected error: HTTP {exc.status} ({type(exc).__name__}): {exc}")
    else:
        raise RuntimeError("a conversation that does not exist should be a 404")


async def sandbox_only(sandbox: Sandbox, client: LexeyClient) -> None:
    # Fault injection: the next customer stream is cut after its third event.
    sandbox.inject(Fault(target="customer", drop_after=3))
    cid = await client.customer.create_conversation()
    cut = await client.customer.send_message(cid, "What are your opening hours?")
    print(f"dropped stream: outcome={cut.outcome} reason={cut.partial_reason} text so far={cut.text!r}")
    if cut.outcome != "partial":
        raise RuntimeError(f"a dropped stream should be partial: {cut}")


async def main() -> int:
    try:
        settings = Settings()  # keys and URLs from the environment or a .env file
        if settings.customer_key is not None:
            async with LexeyClient(settings) as client:
                await tour(client)
        else:
            async with Sandbox(SandboxConfig(delay=0.005)) as sandbox:
                os.environ.update(sandbox.env())  # LEXEY_BASE_URL, LEXI_BASE_URL and three sandbox keys
                async with LexeyClient(Settings(), trust_env=False) as client:  # trust_env=False: no proxy for loopback
                    await tour(client)
                    await sandbox_only(sandbox, client)
    except LexeyError as exc:  # a missing or wrong key, an unreachable service, …
        print(f"lexey error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
