"""Streamable HTTP exposed to clients that misbehave: slow headers past the descriptor limit, foreign Host headers
on every loopback spelling, too many connections, abandoned sessions."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import httpx2
import pytest

from lexey_mcp.sandbox import Fault, Sandbox
from tests.jsonrpc import MCP_HEADERS, initialize
from tests.processes import assert_unfinished_headers_are_cut_off, http_server, mcp_client
from tests.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

FD_LIMIT = 256
INITIALIZE = initialize()
MCP_HEADERS = MCP_HEADERS


def _slow_header_connections(port: int, count: int) -> list[socket.socket]:
    """Connections that start a request and never finish its headers."""
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        held.append(sock)
    return held


async def test_a_slow_header_flood_past_the_fd_limit_does_not_lock_out_a_client(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # The header timeout is longer than the wait: the client gets in because, out of descriptors, the server closes
    # the oldest connections still waiting for headers.
    async with http_server(
        sandbox, tmp_path, open_files=f"{FD_LIMIT}:{FD_LIMIT}", LEXEY_MCP_HEADER_TIMEOUT="60", LEXEY_LOG_LEVEL="INFO"
    ) as server:
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        flood = _slow_header_connections(port, FD_LIMIT + 150)
        try:
            with anyio.fail_after(20):  # generous: the point is served or not, not how fast
                async with mcp_client(server.url) as client:
                    tools = await client.list_tools()
        finally:
            for sock in flood:
                sock.close()
        assert tools.tools
        assert server.alive()
        lines = server.stderr().splitlines()
        assert len(lines) < 50, "\n".join(lines[:20])
        # Out of descriptors, or at the connection cap kept below them: either way the oldest waiting gave way.
        assert any("cannot accept connections" in line or "closed the oldest waiting" in line for line in lines)


async def test_headers_not_complete_in_time_close_the_connection(sandbox: Sandbox, tmp_path: Path) -> None:
    async with http_server(sandbox, tmp_path, LEXEY_MCP_HEADER_TIMEOUT="0.5") as server:
        await assert_unfinished_headers_are_cut_off(server.url, within=10)


async def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive(sandbox: Sandbox, tmp_path: Path) -> None:
    async with http_server(sandbox, tmp_path, LEXEY_MCP_KEEP_ALIVE="1") as server:
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
        received = b""
        with anyio.fail_after(10):
            while not received.endswith(b"\r\n\r\nNot Found"):
                received += await stream.receive()
        # Closed after the 1 s keep-alive: uvicorn's default (5 s) would hold it past this deadline.
        with anyio.fail_after(4), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError)):
            await stream.receive()
        await stream.aclose()
        assert received.startswith(b"HTTP/1.1 404")


@pytest.mark.parametrize("host", ["127.0.0.2", "127.1.2.3", "0:0:0:0:0:0:0:1", "[::1]", "localhost", "127.0.0.1"])
async def test_every_loopback_bind_refuses_a_foreign_host(sandbox: Sandbox, tmp_path: Path, host: str) -> None:
    async with http_server(sandbox, tmp_path, host=host, LEXEY_LOG_LEVEL="INFO") as server:
        async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
            foreign = await http.post(
                server.url, json=INITIALIZE, headers={**MCP_HEADERS, "Host": "rebind.attacker.example"}
            )
            other_loopback = await http.post(
                server.url, json=INITIALIZE, headers={**MCP_HEADERS, "Host": "127.9.9.9:80"}
            )
            origin = await http.post(
                server.url, json=INITIALIZE, headers={**MCP_HEADERS, "Origin": "http://rebind.attacker.example"}
            )
        assert foreign.status_code == 421
        assert other_loopback.status_code == 421
        assert origin.status_code == 403
        async with mcp_client(server.url) as client:
            assert (await client.list_tools()).tools
        assert f"serving streamable HTTP at {server.url}\n" in server.stderr()


async def test_an_idle_session_is_closed_after_the_idle_timeout(sandbox: Sandbox, tmp_path: Path) -> None:
    async with (
        http_server(sandbox, tmp_path, LEXEY_MCP_SESSION_IDLE_MINUTES="0.01", LEXEY_LOG_LEVEL="DEBUG") as server,
        httpx2.AsyncClient(trust_env=False, timeout=10) as http,
    ):
        opened = await http.post(server.url, json=INITIALIZE, headers=MCP_HEADERS)
        assert opened.status_code == 200
        session = {**MCP_HEADERS, "Mcp-Session-Id": opened.headers["mcp-session-id"]}
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        assert (await http.post(server.url, json=ping, headers=session)).status_code == 200
        # The SDK logs the reaping (at LEXEY_LOG_LEVEL=DEBUG); asking the session would keep it alive.
        reaped = f"Session {opened.headers['mcp-session-id']} idle timeout"
        await wait_until(lambda: reaped in server.stderr(), "the session reaped after its 0.6 s idle timeout")
        assert (await http.post(server.url, json=ping, headers=session)).status_code == 404


async def test_a_request_id_in_flight_is_refused_and_the_first_still_answered(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.inject(Fault(target="customer", stall_after=1, stall_seconds=1.0))
    call = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "tools/call",
        "params": {"name": "send_customer_message", "arguments": {"message": "Hello"}},
    }
    async with (
        http_server(sandbox, tmp_path) as server,
        httpx2.AsyncClient(trust_env=False, timeout=30) as http,
    ):
        opened = await http.post(server.url, json=INITIALIZE, headers=MCP_HEADERS)
        session = {
            **MCP_HEADERS,
            "Mcp-Session-Id": opened.headers["mcp-session-id"],
            "Mcp-Protocol-Version": "2025-06-18",
        }
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(server.url, json=initialized, headers=session)).status_code == 202
        answers: dict[str, httpx2.Response] = {}

        async def post(name: str) -> None:
            answers[name] = await http.post(server.url, json=call, headers=session)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(post, "first")
                # In flight once its upstream stream is open (it stalls for 1 s):
                await wait_until(lambda: sandbox.stats.open_streams == 1, "the first call's upstream stream open")
                group.start_soon(post, "second")
    assert answers["second"].status_code == 409
    assert answers["second"].json() == {
        "jsonrpc": "2.0",
        "id": 5,
        "error": {
            "code": -32600,
            "message": "Request id 5 is already in use by a request in flight: use a new id for each request.",
        },
    }
    assert answers["first"].status_code == 200
    assert '"result"' in answers["first"].text


async def test_closing_the_connection_cancels_a_stateless_2025_06_18_call(sandbox: Sandbox, tmp_path: Path) -> None:
    """docs/tools.md's claim: on --stateless, a legacy client's notifications/cancelled cannot be routed, but closing
    the call's connection does cancel it (its upstream stream closes)."""
    sandbox.inject(Fault(target="customer", stall_after=1, stall_seconds=30.0))
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "send_customer_message", "arguments": {"message": "Hello"}},
    }
    headers = {**MCP_HEADERS, "Mcp-Protocol-Version": "2025-06-18"}
    async with http_server(sandbox, tmp_path, "--stateless") as server:
        async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
            with anyio.move_on_after(1.0):  # the upstream stalls: give up on the call, closing its connection
                await http.post(server.url, json=call, headers=headers)
            assert sandbox.stats.open_streams == 1
        with anyio.fail_after(10):
            reason = await sandbox.wait_for_stream_closed(timeout=10)
        assert reason in ("disconnected", "cancelled")
        assert sandbox.stats.open_streams == 0


async def test_the_open_file_limit_is_raised_to_the_hard_limit(sandbox: Sandbox, tmp_path: Path) -> None:
    async with http_server(sandbox, tmp_path, open_files=f"{FD_LIMIT}:{4 * FD_LIMIT}") as server:
        limits = await anyio.Path(f"/proc/{server.pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert line.split()[3:5] == [str(4 * FD_LIMIT), str(4 * FD_LIMIT)], line
