"""Each shim of `lexey_mcp.compat` on real objects: when an upgrade of mcp, uvicorn or h11 removes or changes what one
relies on, its test fails with a message naming the library, the version installed, the one checked and the shim."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import socket
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib.metadata import version
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.server import MCPServer, Server, ServerRequestContext
from mcp.server.connection import Connection
from mcp.server.mcpserver.tools import Tool
from mcp.types import EmptyResult, SubscribeRequestParams
from starlette.types import Receive, Scope, Send

from lexey_mcp import compat
from lexey_mcp.header_timeout import ACCEPT_BATCH, LISTEN_BACKLOG, accept_path
from lexey_mcp.listeners import listen
from lexey_mcp.serving import serving, uvicorn_server
from tests.jsonrpc import MCP_HEADERS, initialize
from tests.waiting import wait_until

pytestmark = pytest.mark.anyio

INITIALIZE = initialize()
SHIMS = [
    compat.lowlevel_server,
    compat.tool_by_name,
    compat.connection_of,
    compat.open_sessions,
    compat.idle_sessions,
    compat.forget_session,
    compat.before_session_admission,
    compat.QuietConfig,
    compat.UvicornServer,
    compat.h11_protocol,
    compat.transport_of,
]


def upgraded(library: str, shim: str, what: str) -> str:
    """The failure message: which upgrade broke which shim."""
    return (
        f"{library} {version(library)} (compat was checked against {compat.CHECKED_AGAINST[library]}) changed "
        f"{what}: update compat.{shim} for it, then CHECKED_AGAINST and the shim's docstring."
    )


@contextmanager
def relying(library: str, shim: str, what: str) -> Iterator[None]:
    """Any error inside (an assertion too) fails the test naming the upgrade and the shim."""
    try:
        yield
    except (Exception, pytest.fail.Exception) as exc:  # pytest.raises and wait_until fail with the latter
        pytest.fail(f"{upgraded(library, shim, what)} ({type(exc).__name__}: {exc})")


def test_the_versions_installed_are_the_versions_checked() -> None:
    for library, checked in compat.CHECKED_AGAINST.items():
        assert version(library) == checked, upgraded(library, "*", "its version: re-check every shim")


@pytest.mark.parametrize("shim", SHIMS, ids=lambda shim: shim.__name__)
def test_each_shim_names_the_version_it_was_checked_against(shim: Callable[..., object]) -> None:
    doc = " ".join((inspect.getdoc(shim) or "").split())
    named = [f"{library} {checked}" for library, checked in compat.CHECKED_AGAINST.items() if library in doc]
    assert named, f"compat.{shim.__name__}'s docstring names no library it relies on"
    for phrase in named:
        assert phrase in doc, f"compat.{shim.__name__}'s docstring does not say it was checked against {phrase}"


def probe_server() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("probe")

    @server.tool()
    def echo(text: str, times: int = 1) -> str:
        """Say it again."""
        return text * times

    return server


async def test_lowlevel_server_is_the_servers_own() -> None:
    server = probe_server()
    with relying("mcp", "lowlevel_server", "MCPServer._lowlevel_server"):
        lowlevel = compat.lowlevel_server(server)
        assert isinstance(lowlevel, Server)
        for name in ("run", "create_initialization_options", "add_request_handler"):
            assert callable(getattr(lowlevel, name, None)), f"no Server.{name}"
        assert lowlevel.name == server.name


async def test_tool_by_name_finds_the_tool_and_its_argument_model() -> None:
    server = probe_server()
    with relying("mcp", "tool_by_name", "MCPServer._tool_manager.get_tool or a tool's fn_metadata"):
        tool = compat.tool_by_name(server, "echo")
        assert isinstance(tool, Tool)
        assert tool.name == "echo"
        metadata = tool.fn_metadata
        model = metadata.arg_model.model_validate(metadata.pre_parse_json({"text": "hi", "times": 2}))
        assert model.model_dump() == {"text": "hi", "times": 2}
        assert compat.tool_by_name(server, "no_such_tool") is None


async def test_connection_of_is_the_connection_every_request_of_a_client_shares() -> None:
    server = probe_server()
    seen: list[Connection] = []

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        seen.append(compat.connection_of(ctx.session))
        return EmptyResult()

    compat.lowlevel_server(server).add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    # Failing outside the client's task group: inside, the failure would come wrapped in exception groups.
    with relying("mcp", "connection_of", "ServerSession._connection (one per client connection)"):
        async with Client(server, mode="legacy") as client:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecated for 2026-07-28; exactly what a 2025 client does
                await client.subscribe_resource("probe://one")
                await client.subscribe_resource("probe://two")
        assert len(seen) == 2
        assert all(isinstance(c, Connection) for c in seen)
        assert seen[0] is seen[1]


async def test_the_session_manager_shims_admit_list_and_forget_sessions() -> None:
    server = probe_server()
    app = server.streamable_http_app(streamable_http_path="/mcp", max_sessions=10)
    manager = server.session_manager
    asked: list[object | None] = []
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    transport = httpx2.ASGITransport(app)
    # What the shims said, checked outside the manager's task group (inside, a failure comes wrapped in groups).
    with relying("mcp", "the session manager shims", "StreamableHTTPSessionManager's private state"):
        compat.before_session_admission(manager, asked.append)
        async with (
            app.router.lifespan_context(app),
            httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", timeout=30) as http,
        ):
            opened = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
            assert opened.status_code == 200
            session_id = opened.headers["mcp-session-id"]
            open_before = compat.open_sessions(manager)
            with anyio.move_on_after(30):  # checked below
                await wait_until(lambda: bool(compat.idle_sessions(manager)), "the new session to idle")
            idle = compat.idle_sessions(manager)
            for session in idle:
                compat.forget_session(manager, session.session_id)
                session.idle_scope.cancel()
            open_after = compat.open_sessions(manager)
            headers = {**MCP_HEADERS, "Mcp-Session-Id": session_id, "Mcp-Protocol-Version": "2025-06-18"}
            forgotten = (await http.post("/mcp", json=ping, headers=headers)).status_code
    with relying("mcp", "before_session_admission", "StreamableHTTPSessionManager._admit_session"):
        assert asked == [None]
    with relying("mcp", "open_sessions", "StreamableHTTPSessionManager._server_instances"):
        assert open_before == 1
    with relying("mcp", "idle_sessions", "the session manager's sessions, owners or requests in flight"):
        assert [(s.session_id, s.owner) for s in idle] == [(session_id, None)]
        assert isinstance(idle[0].idle_scope, anyio.CancelScope)
    with relying("mcp", "forget_session", "StreamableHTTPSessionManager._server_instances or _session_owners"):
        assert open_after == 0
        assert forgotten == 404


def test_quiet_config_leaves_the_process_logging_alone() -> None:
    access = logging.getLogger("uvicorn.access")
    before = (access.propagate, list(access.handlers))
    try:
        compat.QuietConfig(ok_app, access_log=False, log_config=None)
        assert (access.propagate, access.handlers) == before
        with relying("uvicorn", "QuietConfig", "Config.__init__, which no longer configures logging"):
            uvicorn.Config(ok_app, access_log=False, log_config=None)  # what QuietConfig keeps from happening
            assert access.propagate is False
    finally:
        access.propagate, access.handlers = before[0], before[1]


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_uvicorn_server_has_what_uvicorn_server_relies_on() -> None:
    with relying("uvicorn", "UvicornServer", "Server's methods or its server_state"):
        for name in ("serve", "startup", "main_loop", "shutdown", "capture_signals", "handle_exit", "on_tick"):
            assert callable(getattr(uvicorn.Server, name, None)), f"no Server.{name}"
        for name in ("startup", "shutdown"):
            assert "sockets" in inspect.signature(getattr(uvicorn.Server, name)).parameters, f"Server.{name}"
        server = uvicorn.Server(uvicorn.Config(ok_app, log_config=None))
        for name in ("connections", "tasks"):
            assert isinstance(getattr(server.server_state, name, None), set), f"no server_state.{name}"
        assert (server.started, server.should_exit) == (False, False)


@asynccontextmanager
async def running(app: Any, **options: Any) -> AsyncIterator[tuple[compat.UvicornServer, int]]:
    sockets = listen("127.0.0.1", 0, "the probe")
    server = uvicorn_server(app, **options)
    async with serving(server, sockets, "the probe"):
        yield server, sockets[0].getsockname()[1]


async def test_uvicorn_server_serves_when_ready_and_stops_a_request_that_never_ends() -> None:
    entered, left, stopping = anyio.Event(), anyio.Event(), []

    async def endless(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        try:
            await anyio.sleep_forever()
        finally:
            left.set()

    with anyio.fail_after(30), relying("uvicorn", "UvicornServer", "Server's start-up, main loop, shutdown or state"):
        async with running(endless, grace=0.2, before_stop=lambda: stopping.append(True)) as (server, port):
            assert server.started
            stream = await anyio.connect_tcp("127.0.0.1", port)
            await stream.send(b"GET / HTTP/1.1\r\nHost: probe\r\n\r\n")
            await entered.wait()
            assert len(server.server_state.connections) == 1
            assert len(server.server_state.tasks) == 1
        assert stopping == [True]
        assert left.is_set()
        assert not server.server_state.connections
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError)):
            await stream.receive()  # the connection was cut
        await stream.aclose()


async def test_transport_of_closes_a_response_mid_body() -> None:
    found: list[asyncio.BaseTransport | None] = []

    async def half_then_cut(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        found.append(compat.transport_of(send))
        if found[0] is not None:
            found[0].close()
            await anyio.sleep_forever()  # the body never ends but by the cut

    with anyio.fail_after(30), relying("uvicorn", "transport_of", "its send (RequestResponseCycle.send, .transport)"):
        async with running(half_then_cut, grace=0.2) as (_, port), httpx2.AsyncClient(trust_env=False) as http:
            with pytest.raises(httpx2.RemoteProtocolError):  # the body ended without its last chunk
                await http.get(f"http://127.0.0.1:{port}/")
            assert found[0] is not None, "uvicorn's send is no longer a bound method of a cycle with a transport"
    assert compat.transport_of(lambda message: None) is None  # not uvicorn's: the caller closes another way


async def test_a_burst_of_new_clients_is_queued_by_the_kernel_beyond_one_accept_batch() -> None:
    # The accept path takes ACCEPT_BATCH connections per wake-up through uvicorn's `backlog`, which asyncio makes the
    # listen backlog too: past it the kernel drops a new client's SYN, and the client waits a second or more to send
    # it again (a burst of 1,000 clients: a third waited over a second). Once listening, the backlog is
    # LISTEN_BACKLOG. Here the event loop is held by these blocking connects: only the kernel's queue takes them.
    accepting = accept_path.accepting(5.0, 10_000)
    with anyio.fail_after(60), relying("uvicorn", "UvicornServer", "start-up's create_server on the given sockets"):
        async with running(ok_app, grace=0.2, accepting=accepting) as (_, port):
            burst = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4 * ACCEPT_BATCH)]
            for sock in burst:
                sock.close()
    assert ACCEPT_BATCH < 4 * ACCEPT_BATCH <= LISTEN_BACKLOG


async def test_uvicorn_server_with_signals_stops_on_one_and_restores_the_handlers() -> None:
    heard: list[int] = []

    def hear(signum: int) -> bool:
        heard.append(signum)
        return True

    previous = signal.getsignal(signal.SIGUSR1)
    sockets = listen("127.0.0.1", 0, "the probe")
    server = compat.UvicornServer(
        compat.QuietConfig(ok_app, http="h11", ws="none", log_config=None, lifespan="off"),
        grace=0.2,
        signals=(signal.SIGUSR1,),
        on_signal=hear,
    )
    with anyio.fail_after(30), relying("uvicorn", "UvicornServer", "Server's signal handling or main loop"):
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, sockets)
            await server.ready.wait()
            # Checked before raising it: a signal nobody handles would end the test run.
            assert signal.getsignal(signal.SIGUSR1) == server.handle_exit, "serve no longer enters capture_signals"
            async with httpx2.AsyncClient(trust_env=False) as http:
                answer = await http.get(f"http://127.0.0.1:{sockets[0].getsockname()[1]}/")
            assert "date" in answer.headers, "no Date header: uvicorn's main loop (on_tick) no longer sets it"
            signal.raise_signal(signal.SIGUSR1)
        assert heard == [signal.SIGUSR1]
        assert server.stopped_by == signal.SIGUSR1
        assert signal.getsignal(signal.SIGUSR1) == previous


class Recorded:
    """What `h11_protocol` told of one connection."""

    def __init__(self, open_connections: int, awaiting: Callable[[], bool]) -> None:
        self.open_connections = open_connections
        self.awaiting = awaiting
        self.reads: list[bool] = []
        self.closed = False

    def read(self) -> None:
        self.reads.append(self.awaiting())

    def lost(self) -> None:
        self.closed = True


async def test_h11_protocol_tells_the_hooks_of_each_connection() -> None:
    connections: list[Recorded] = []

    def hooks(transport: Any, open_connections: int, awaiting: Callable[[], bool]) -> Recorded:
        connections.append(Recorded(open_connections, awaiting))
        return connections[-1]

    what = f"H11Protocol (or h11 {version('h11')}): its connection hooks, connections or conn.their_state"
    with anyio.fail_after(30), relying("uvicorn", "h11_protocol", what):
        async with running(ok_app, grace=0.2, http=compat.h11_protocol(hooks)) as (_, port):
            first = await anyio.connect_tcp("127.0.0.1", port)
            await wait_until(lambda: len(connections) == 1, "the first connection")
            second = await anyio.connect_tcp("127.0.0.1", port)
            await wait_until(lambda: len(connections) == 2, "the second connection")
            assert [c.open_connections for c in connections] == [1, 2]
            recorded = connections[0]
            assert recorded.awaiting(), "not awaiting headers before a request"
            await first.send(b"GET / HTTP/1.1\r\nHost: probe\r\n")
            await wait_until(lambda: recorded.reads == [True], "the partial headers read")
            await first.send(b"\r\n")
            await wait_until(lambda: recorded.reads == [True, False], "the complete headers read")
            assert (await first.receive()).startswith(b"HTTP/1.1 200")
            await first.aclose()
            await wait_until(lambda: recorded.closed, "the connection's end")
            await second.aclose()
