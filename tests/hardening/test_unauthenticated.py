"""What a client without credentials can cost a listener: no body read before authentication, malformed JSON a 400
without a traceback, idle connections giving way to a prompt client, the stdio webhook listener out of descriptors.
(The red team's breaks of issue 21; benchmarks/unauthenticated.py measures them.)"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from starlette.types import Message, Receive, Scope, Send

from lexey_mcp.http_transport import McpRequests
from lexey_mcp.paths import HEALTH_PATH, MCP_PATH, WEBHOOK_PATH
from lexey_mcp.sandbox import Sandbox
from tests.events.helpers import SECRET, body_of, escalation, post
from tests.processes import clean_env, free_port, http_server, mcp_client
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

TOKEN = "t0ken-for-the-unauthenticated-tests-0123456789"
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
FD_LIMIT = 256


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


async def _status_of(stream: anyio.abc.SocketStream) -> bytes:
    """The status line of the response on `stream`."""
    received = b""
    while b"\r\n" not in received:
        received += await stream.receive()
    return received.split(b"\r\n", 1)[0]


@pytest.mark.e2e
async def test_a_request_without_a_token_is_refused_before_its_body_is_read(sandbox: Sandbox, tmp_path: Path) -> None:
    # 4 MiB announced, 1 KiB sent: the body is never waited for (it was, for any request naming a session).
    async with http_server(sandbox, tmp_path, LEXEY_MCP_AUTH_TOKEN=TOKEN) as server:
        stream = await anyio.connect_tcp("127.0.0.1", _port(server.url))
        try:
            await stream.send(
                b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Accept: application/json, text/event-stream\r\nMcp-Session-Id: guessed\r\n"
                b"Content-Length: %d\r\n\r\n" % (4 * 1024 * 1024) + b"[" * 1024
            )
            with anyio.fail_after(20):  # generous: the point is answered or not, not how fast
                status = await _status_of(stream)
        finally:
            await stream.aclose()
        assert status == b"HTTP/1.1 401 Unauthorized"


@pytest.mark.e2e
async def test_deeply_nested_json_is_a_400_without_a_traceback(sandbox: Sandbox, tmp_path: Path) -> None:
    async with (
        http_server(sandbox, tmp_path, LEXEY_MCP_AUTH_TOKEN=TOKEN, LEXEY_LOG_LEVEL="INFO") as server,
        httpx2.AsyncClient(trust_env=False, timeout=30) as http,
    ):
        headers = {**MCP_HEADERS, "Mcp-Session-Id": "guessed"}
        tokenless = await http.post(server.url, content=b"[" * 100_000, headers=headers)
        nested = await http.post(
            server.url, content=b"[" * 100_000, headers={**headers, "Authorization": f"Bearer {TOKEN}"}
        )
        junk = await http.post(
            server.url, content=b"{not json", headers={**headers, "Authorization": f"Bearer {TOKEN}"}
        )
        async with mcp_client(server.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            assert (await client.list_tools()).tools
    assert tokenless.status_code == 401
    assert nested.status_code == 400
    assert nested.json()["error"]["code"] == -32700
    assert "recursion limit" in nested.json()["error"]["message"]
    assert junk.status_code == 400
    assert junk.json()["error"]["code"] == -32700
    log = server.stderr()
    assert "Traceback" not in log
    assert "RecursionError" not in log


@pytest.mark.e2e
async def test_idle_connections_at_the_cap_give_way_to_a_prompt_client(sandbox: Sandbox, tmp_path: Path) -> None:
    # Five times the cap in connections that never send a request, or never finish its headers, all held open for
    # longer than the test: the client still gets in (it got 503 while they were open).
    async with http_server(sandbox, tmp_path, LEXEY_MCP_MAX_CONCURRENCY="20", LEXEY_MCP_HEADER_TIMEOUT="120") as server:
        port = _port(server.url)
        held: list[socket.socket] = []
        try:
            for index in range(100):
                sock = socket.create_connection(("127.0.0.1", port))
                if index % 2:
                    sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                held.append(sock)
            with anyio.fail_after(30):
                async with mcp_client(server.url) as client:
                    tools = await client.list_tools()
                    created = await client.call_tool("create_conversation", {})
        finally:
            for sock in held:
                sock.close()
        assert tools.tools
        assert not created.is_error


@pytest.mark.e2e
async def test_past_the_concurrency_limit_a_request_gets_503(sandbox: Sandbox, tmp_path: Path) -> None:
    # Two requests in flight (their bodies not finished yet) fill a limit of 2, and both are served: the next request
    # is refused. (uvicorn's limit counted connections: the second request in flight got 503 too.)
    async with http_server(sandbox, tmp_path, LEXEY_MCP_MAX_CONCURRENCY="2", LEXEY_LOG_LEVEL="INFO") as server:
        port = _port(server.url)
        pending = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(2)]
        try:
            for stream in pending:
                await stream.send(
                    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                    b"Accept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{" % port
                )
            async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
                with anyio.fail_after(30):
                    while True:  # until the server has read both requests' headers
                        response = await http.get(server.url.replace(MCP_PATH, HEALTH_PATH))
                        if response.status_code == 503:
                            break
            # The two in flight were served all along: their bodies end now, and each gets the SDK's answer.
            statuses = []
            for stream in pending:
                await stream.send(b" " * 98 + b"}")
                with anyio.fail_after(30):
                    statuses.append(await _status_of(stream))
        finally:
            for stream in pending:
                await stream.aclose()
        assert response.text == "Service Unavailable: too many requests in flight; retry shortly."
        assert "LEXEY_MCP_MAX_CONCURRENCY" in server.stderr()
        assert [status.split(b" ")[1] for status in statuses] == [b"400", b"400"]  # `{}` is no JSON-RPC message


@pytest.mark.e2e
async def test_the_concurrency_limit_serves_exactly_its_number(sandbox: Sandbox, tmp_path: Path) -> None:
    # 1,500 concurrent calls served 383 of a documented 1,000. Here 120 tool calls against a limit of 100: each of
    # the first 100 is held in flight (the server has asked for its body: `100 Continue`), the other 20 are refused,
    # then the 100 send their bodies and every one is answered with the tool's result.
    async with http_server(sandbox, tmp_path, "--stateless", LEXEY_MCP_MAX_CONCURRENCY="100") as server:
        port = _port(server.url)
        call = json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "create_conversation"}}
        ).encode()
        head = (
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            b"Accept: application/json, text/event-stream\r\nExpect: 100-continue\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % (port, len(call))
        )
        held: list[anyio.abc.SocketStream] = []
        try:
            with anyio.fail_after(60):
                for _ in range(100):  # one at a time: a connection still waiting for headers may give way to a new one
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                    held.append(stream)
                    await stream.send(head)
                    asked = b""
                    while not asked.endswith(b"\r\n\r\n"):
                        asked += await stream.receive()
                    assert asked == b"HTTP/1.1 100 Continue\r\n\r\n"
            async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
                refused = [(await http.post(server.url, content=call, headers=MCP_HEADERS)) for _ in range(20)]
            answers = []
            for stream in held:
                await stream.send(call)
            with anyio.fail_after(60):
                for stream in held:
                    answers.append(await _read_to_end(stream))
        finally:
            for stream in held:
                await stream.aclose()
    assert [r.status_code for r in refused] == [503] * 20
    served = [a for a in answers if a.startswith(b"HTTP/1.1 200 ") and b'"conversation_id"' in a]
    assert len(served) == 100, answers[0]


async def _read_to_end(stream: anyio.abc.SocketStream) -> bytes:
    """What the server sends on `stream` until it closes the connection."""
    received = b""
    with contextlib.suppress(anyio.EndOfStream):
        while True:
            received += await stream.receive()
    return received


def _webhook_listener_at_the_fd_limit(tmp_path: Path) -> tuple[StdioServerParameters, int, Path]:
    """A stdio server with its webhook listener, at FD_LIMIT descriptors: how to start it, its port, its stderr."""
    port = free_port()
    log = tmp_path / "stderr"
    env = clean_env(
        LEXEY_WEBHOOK_SECRET=SECRET, LEXEY_STATE_DIR=str(tmp_path), LEXEY_MCP_HEADER_TIMEOUT="120", LOG=str(log)
    )
    limited = f'ulimit -n {FD_LIMIT} && exec "$@" 2>"$LOG"'
    args = ["-c", limited, "sh", sys.executable, "-m", "lexey_mcp", "--webhook-port", str(port)]
    return StdioServerParameters(command="/bin/sh", args=args, env=env), port, log


@pytest.mark.e2e
async def test_the_stdio_webhook_listener_past_the_fd_limit_still_answers(tmp_path: Path) -> None:
    # The listener shares the HTTP transport's accept path: connections waiting for headers make room (before the
    # descriptors run out, and when they do), and accept failures are logged a few times, not thousands a second.
    params, port, log = _webhook_listener_at_the_fd_limit(tmp_path)
    held: list[socket.socket] = []
    async with Client(params) as client, httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        await client.list_tools()  # the server is up, and so is its receiver
        try:
            for _ in range(FD_LIMIT + 150):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"POST /webhooks/lexey HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                held.append(sock)
            with anyio.fail_after(30):
                response = await post(http, f"http://127.0.0.1:{port}{WEBHOOK_PATH}", body_of(escalation()))
                listed = await client.call_tool("list_escalations", {"since": "2026-11-30T08:00:00Z"})
        finally:
            for sock in held:
                sock.close()
    assert response.status_code == 200
    assert listed.structured_content is not None
    assert len(listed.structured_content["escalations"]) == 1
    lines = log.read_text(errors="replace").splitlines()
    assert len(lines) < 50, "\n".join(lines[:20])


@pytest.mark.e2e
async def test_a_churning_flood_at_the_fd_limit_never_runs_the_listener_out_of_descriptors(tmp_path: Path) -> None:
    # Connections re-opened as fast as the listener closes them: one that gives way to a new one frees its descriptor
    # a few loop iterations after the new one took its own, and the listener accepts a batch every iteration. With
    # too little room for that, the process ran out of descriptors, and asyncio stopped accepting on every listener
    # for a second each time (a signed webhook waited 1 to 5 s).
    params, port, log = _webhook_listener_at_the_fd_limit(tmp_path)
    async with Client(params) as client, httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        await client.list_tools()  # the server is up, and so is its receiver
        # In a process of its own, as an attacker's would be (in this one it would delay the webhook's own request).
        flood = await anyio.open_process([sys.executable, "-c", _CHURN, str(port), str(FD_LIMIT + 150)])
        try:
            # Its second line comes 5 s after the first, counting the connections that gave way meanwhile.
            await wait_until(lambda: "more like it" in log.read_text(errors="replace"), "5 s of churning at the cap")
            response = await post(http, f"http://127.0.0.1:{port}{WEBHOOK_PATH}", body_of(escalation()))
        finally:
            flood.kill()
            await flood.wait()
    assert response.status_code == 200
    text = log.read_text(errors="replace")
    assert "closed the oldest waiting for its headers" in text  # the cap was reached, and connections gave way
    assert "cannot accept connections" not in text


# Connections to a port, each re-opened as soon as the server closes it, sending the start of a request's headers.
_CHURN = """
import asyncio, sys
port, connections = int(sys.argv[1]), int(sys.argv[2])
async def churn():
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.write(b"POST /webhooks/lexey HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n")
        try:
            await reader.read()
        except OSError:
            pass
        writer.close()
async def main():
    await asyncio.gather(*(churn() for _ in range(connections)))
asyncio.run(main())
"""


async def _answer(messages: list[Message], hold: bool = False) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of the guard's answer to a POST whose body arrives as `messages` (then, with `hold`,
    nothing more: the client went quiet). Its limits: 100 bytes, 0.2 seconds."""
    sent: list[Message] = []

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        if hold:
            await anyio.sleep_forever()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def unreachable(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the SDK must not see this request")

    guard = McpRequests(unreachable, toolset_of=None, resource_metadata=None, max_body=100, body_seconds=0.2)
    scope = {"type": "http", "method": "POST", "headers": [(b"mcp-session-id", b"s")]}
    with anyio.fail_after(10):
        await guard(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


async def test_a_body_that_stops_arriving_is_a_408() -> None:
    status, body = await _answer([{"type": "http.request", "body": b"{", "more_body": True}], hold=True)
    assert status == 408
    assert body["error"]["message"] == "The body did not arrive within 0.2 seconds."


async def test_a_body_over_the_limit_is_a_413_whether_announced_or_not() -> None:
    chunk = {"type": "http.request", "body": b" " * 60, "more_body": True}
    status, body = await _answer([chunk, dict(chunk)])
    assert status == 413
    assert body["error"]["message"] == "The body is over 100 bytes."
