"""stdio with a host that misbehaves: a line too long, a flood of requests, a request id used twice at once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.processes import SERVER, clean_env

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

LINE_CAP = 64 * 1024


class Wire:
    def __init__(self, process: Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self._process = process
        self._out = BufferedByteReceiveStream(process.stdout)

    async def send(self, message: dict[str, Any] | bytes) -> None:
        assert self._process.stdin is not None
        data = message if isinstance(message, bytes) else json.dumps(message).encode()
        await self._process.stdin.send(data + b"\n")

    async def receive(self) -> dict[str, Any]:
        """The next message that is not a notification."""
        while True:
            line = await self._out.receive_until(b"\n", 4 * 1024 * 1024)
            message: dict[str, Any] = json.loads(line)
            if "id" in message:
                return message

    async def answers(self, count: int) -> dict[Any, dict[str, Any]]:
        found: dict[Any, dict[str, Any]] = {}
        while len(found) < count:
            message = await self.receive()
            assert message["id"] not in found, f"two answers to id {message['id']}"
            found[message["id"]] = message
        return found


def call(request_id: int, text: str = "Hello") -> dict[str, Any]:
    params = {"name": "send_customer_message", "arguments": {"message": text}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


@asynccontextmanager
async def stdio_server(**env: str) -> AsyncIterator[Wire]:
    process = await anyio.open_process(
        [*SERVER, "--sandbox", "--sandbox-delay", "0.05"], env=clean_env(**env), stderr=None
    )
    async with process:
        wire = Wire(process)
        with anyio.fail_after(30):
            await wire.send(
                {
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": "raw", "version": "1"},
                    },
                }
            )
            assert "result" in await wire.receive()
            await wire.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            yield wire
        assert process.stdin is not None
        await process.stdin.aclose()
        with anyio.fail_after(10):
            await process.wait()


async def test_a_line_past_the_cap_is_answered_with_an_error_and_the_connection_kept() -> None:
    async with stdio_server(LEXEY_MCP_MAX_LINE_BYTES=str(LINE_CAP)) as wire:
        huge = json.dumps(call(7, "x" * (LINE_CAP * 40))).encode()
        await wire.send(huge)
        await wire.send({"jsonrpc": "2.0", "id": 8, "method": "ping"})
        with anyio.fail_after(30):
            answers = await wire.answers(2)
    assert answers[7]["error"]["code"] == -32700
    assert answers[7]["error"]["message"].startswith(
        f"Message too long: {len(huge) + 1} bytes; the limit is {LINE_CAP}"
    )
    assert answers[8]["result"] == {}


async def test_a_line_that_is_not_json_is_answered_with_a_parse_error() -> None:
    async with stdio_server() as wire:
        await wire.send(b"{not json")
        with anyio.fail_after(30):
            answer = await wire.receive()
    assert answer["id"] is None
    assert answer["error"]["code"] == -32700


async def test_requests_past_the_in_flight_bound_are_refused_then_served_again() -> None:
    async with stdio_server(LEXEY_MCP_MAX_IN_FLIGHT="2") as wire:
        for request_id in (10, 11, 12):
            await wire.send(call(request_id))
        with anyio.fail_after(30):
            answers = await wire.answers(3)
            await wire.send(call(13))
            later = await wire.receive()
    assert answers[12]["error"]["code"] == -32000
    assert "Too many requests in flight (2, LEXEY_MCP_MAX_IN_FLIGHT)" in answers[12]["error"]["message"]
    assert "result" in answers[10]
    assert "result" in answers[11]
    assert later["id"] == 13
    assert "result" in later


async def test_a_request_id_in_use_is_refused_and_the_first_still_answered() -> None:
    async with stdio_server() as wire:
        await wire.send(call(20, "first"))
        await wire.send(call(20, "second"))
        with anyio.fail_after(30):
            refused = await wire.receive()
            first = await wire.receive()
    assert refused["id"] == 20
    assert refused["error"]["code"] == -32600
    assert refused["error"]["message"] == (
        "Request id 20 is already in use by a request in flight: use a new id for each request."
    )
    assert first["id"] == 20
    assert "result" in first
