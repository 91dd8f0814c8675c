"""`LexeyClient` keeps its upstream connections: counted where the sandbox accepts them, through a TCP relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import ByteStream, SocketStream

from lexey_mcp.client import LexeyClient
from lexey_mcp.sandbox import Fault, Sandbox, settings_for
from tests.conftest import sandbox_settings_for

pytestmark = pytest.mark.anyio

CALLS = 10
_LONG = b'id: 1\ndata: {"type":"delta","text":"' + b"x" * 2000 + b'"}\n\n'


class Relay:
    """A loopback TCP listener in front of the sandbox that counts the connections it accepts."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepted = 0

    async def _pipe(self, source: ByteStream, sink: ByteStream) -> None:
        try:
            async for data in source:
                await sink.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            await sink.aclose()

    async def _handle(self, client: SocketStream) -> None:
        self.accepted += 1
        server = await anyio.connect_tcp("127.0.0.1", self.target_port)
        async with client, server, anyio.create_task_group() as group:
            group.start_soon(self._pipe, client, server)
            group.start_soon(self._pipe, server, client)


@asynccontextmanager
async def relayed(sb: Sandbox, **overrides: object) -> AsyncIterator[tuple[LexeyClient, Relay]]:
    """A client pointed at `sb` through a counting relay."""
    relay = Relay(sb.port)
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as group:
        relay.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        group.start_soon(listener.serve, relay._handle)
        env = {k: v.replace(f":{sb.port}/", f":{relay.port}/") for k, v in sb.env().items()}
        settings = settings_for(env, sandbox_settings_for(sb, **overrides))
        async with LexeyClient(settings, trust_env=False) as client:
            yield client, relay
        group.cancel_scope.cancel()


async def test_sequential_calls_to_one_api_share_one_connection(sb: Sandbox) -> None:
    async with relayed(sb) as (lexey, relay):
        conversation_id = await lexey.customer.create_conversation()
        for i in range(CALLS):
            result = await lexey.customer.send_message(conversation_id, f"What are your hours? ({i})")
            assert result.outcome == "complete"
        history = await lexey.customer.get_messages(conversation_id)
        lexi = await lexey.lexi_chat("Which deals are open?")
    assert len(history) == 2 * CALLS
    assert lexi.outcome == "complete"
    assert relay.accepted == 1  # one origin (the chat APIs and Lexi share the sandbox): one connection throughout
    assert sb.stats.streams_completed == CALLS + 1


async def test_a_body_that_does_not_end_after_done_is_closed(sb: Sandbox) -> None:
    """[DONE] arrives but the body never ends: the reply is complete, and that connection is not kept."""
    stalled = Fault(raw_chunks=[b'id: 1\ndata: {"type":"delta","text":"Hi"}\n\nid: 2\ndata: [DONE]\n\n'], stall_after=1)
    async with relayed(sb) as (lexey, relay):
        conversation_id = await lexey.customer.create_conversation()
        sb.inject(stalled)
        first = await lexey.customer.send_message(conversation_id, "hello")
        assert await sb.wait_for_stream_closed(10) == "disconnected"
        second = await lexey.customer.send_message(conversation_id, "hello again")
    assert (first.outcome, first.text) == ("complete", "Hi")
    assert second.outcome == "complete"
    assert relay.accepted == 2


@pytest.mark.parametrize(
    ("fault", "overrides", "outcome"),
    [
        (Fault(error_at=2), {}, "error"),  # an error event, then [DONE]: read to the end like any other reply
        (Fault(raw_chunks=[_LONG, b"id: 2\ndata: [DONE]\n\n"]), {"max_reply_chars": 1024}, "partial"),  # over the cap
        (Fault(stall_after=2, stall_seconds=30), {"stream_timeout": 1.0}, "partial"),  # timed out: closed at once
    ],
)
async def test_a_stream_ended_early_closes_its_connection_and_one_with_done_keeps_it(
    sb: Sandbox, fault: Fault, overrides: dict[str, object], outcome: str
) -> None:
    async with relayed(sb, **overrides) as (lexey, relay):
        conversation_id = await lexey.customer.create_conversation()
        sb.inject(fault)
        first = await lexey.customer.send_message(conversation_id, "Tell me about your plans")
        assert await sb.wait_for_stream_closed(10) in ("completed", "disconnected")
        await lexey.customer.send_message(conversation_id, "hello again")
    assert first.outcome == outcome
    assert relay.accepted == (1 if outcome == "error" else 2)
