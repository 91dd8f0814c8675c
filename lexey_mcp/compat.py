"""Every use of what mcp, uvicorn, starlette and httpx2 keep private or leave undocumented, each in one named shim.

Checked against the versions requirements.lock pins: mcp 2.3.0 (mcp-types 2.3.0), uvicorn 0.54.0 with h11 0.16.0.
starlette 1.10.0 and httpx2 2.17.0 are used through their public API only. tests/test_compat.py checks each shim on
real objects and, when an upgrade changes what one relies on, fails naming the shim and the version to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

import anyio
import uvicorn
from mcp.server import MCPServer, Server
from mcp.server.connection import Connection
from mcp.server.mcpserver.tools import Tool
from mcp.server.session import ServerSession
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

#: The versions every shim below was checked against (requirements.lock).
CHECKED_AGAINST = {"mcp": "2.3.0", "uvicorn": "0.54.0", "h11": "0.16.0"}

uvicorn_logger = logging.getLogger("uvicorn.error")


# mcp: the server


def lowlevel_server(server: MCPServer[Any]) -> Server[Any]:
    """The low-level server under `server`: for a transport of our own (`stdio_transport.serve`) and the legacy
    `resources/subscribe` handlers (`events.surface`), for which `MCPServer` has no API. mcp 2.3.0: the private
    attribute `MCPServer._lowlevel_server`, a `mcp.server.Server` (`run`, `create_initialization_options`,
    `add_request_handler`)."""
    lowlevel: Server[Any] = server._lowlevel_server
    return lowlevel


def tool_by_name(server: MCPServer[Any], name: str) -> Tool | None:
    """The registered tool `name` (None: no such tool), for its argument model (`Tool.fn_metadata`) before the SDK
    validates the arguments itself. mcp 2.3.0: the private `MCPServer._tool_manager`, a `ToolManager` whose
    `get_tool(name)` returns the `Tool` or None."""
    tool: Tool | None = server._tool_manager.get_tool(name)
    return tool


def connection_of(session: ServerSession) -> Connection:
    """The client connection a request came on, which outlives the per-request `ServerSession`: a low-level
    handler's `ServerRequestContext` offers only the session (`Context.connection` is not built for them). mcp 2.3.0:
    the private `ServerSession._connection`, a `mcp.server.connection.Connection` (`notify`, `exit_stack`)."""
    connection: Connection = session._connection
    return connection


# mcp: the streamable HTTP session manager


@dataclass(frozen=True)
class IdleSession:
    """An open HTTP session with no request in flight and no open stream."""

    session_id: str
    #: Cancelling it ends the session; its `deadline` is when the session would expire (the last request's end plus
    #: the idle timeout), so the earliest is the least recently used.
    idle_scope: anyio.CancelScope
    #: Who opened it (the SDK's `AuthorizationContext`; None without authentication).
    owner: object | None


def open_sessions(manager: StreamableHTTPSessionManager) -> int:
    """How many sessions `manager` holds. mcp 2.3.0: the private dict `_server_instances` (session id → transport)."""
    return len(manager._server_instances)


def idle_sessions(manager: StreamableHTTPSessionManager) -> list[IdleSession]:
    """The sessions of `manager` that are idle now. mcp 2.3.0: the private `_server_instances` (session id →
    `StreamableHTTPServerTransport`), each transport's private `_requests_in_flight` count and public `idle_scope`
    (None until the session's server task runs), and `_session_owners` (session id → owner)."""
    return [
        IdleSession(session_id, scope, manager._session_owners.get(session_id))
        for session_id, transport in manager._server_instances.items()
        if transport._requests_in_flight == 0 and (scope := transport.idle_scope) is not None
    ]


def forget_session(manager: StreamableHTTPSessionManager, session_id: str) -> None:
    """Drop `session_id` from `manager` at once (room for another; cancelling its `idle_scope` then ends it). mcp
    2.3.0: the private `_server_instances` and `_session_owners` dicts, which the manager's own teardown pops too."""
    manager._server_instances.pop(session_id, None)
    manager._session_owners.pop(session_id, None)


def before_session_admission(manager: StreamableHTTPSessionManager, hook: Callable[[object | None], None]) -> None:
    """Run `hook(requestor)` each time `manager` is about to admit a new session, before it checks its session cap.
    mcp 2.3.0: wraps the private method `_admit_session(requestor)`, which returns the new transport, or None at the
    cap (`max_sessions`)."""
    admit = manager._admit_session

    def admit_after_hook(requestor: Any) -> Any:
        hook(requestor)
        return admit(requestor)

    manager._admit_session = admit_after_hook  # type: ignore[method-assign]


# uvicorn


class QuietConfig(uvicorn.Config):
    """`uvicorn.Config` that leaves the process's logging alone: several listeners share this process, and uvicorn
    0.54.0's undocumented `Config.configure_logging`, run from `__init__`, would reset the `uvicorn.*` loggers (with
    `access_log=False`, silence `uvicorn.access` for all of them)."""

    def configure_logging(self) -> None:
        """Nothing: the process's logging is the CLI's (`cli.configure_logging`)."""


class UvicornServer(uvicorn.Server):
    """`uvicorn.Server` run by this process on sockets it bound: `on_startup` runs before it listens, `ready` is set
    once it does (with `listen_backlog`, the sockets' listen backlog then; uvicorn's `backlog` is asyncio's accept
    batch too); `stop()` ends it, or one of `signals` does when `on_signal(signum)` says so. Its shutdown is
    bounded: open connections get `grace` seconds to finish, then they are aborted and their tasks cancelled (`grace`
    more for those to end), then the app's lifespan ends.

    Relies on these undocumented parts of uvicorn 0.54.0's `Server`: `serve(sockets)` runs `startup(sockets)` (which
    sets `started` and `servers`, the asyncio servers), `main_loop()` unless `should_exit` is set (uvicorn's polls it
    every 0.1 s and refreshes the Date header), then `shutdown(sockets)` when started, all inside `capture_signals()`
    (whose handler is `handle_exit(sig, frame)`); `server_state.connections`, each connection's protocol
    (`shutdown()`, `transport`); `server_state.tasks`, one per request being served; `lifespan.shutdown()`.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        grace: float,
        on_startup: Callable[[], None] = lambda: None,
        before_stop: Callable[[], None] = lambda: None,
        signals: tuple[int, ...] = (),
        on_signal: Callable[[int], bool] = lambda signum: True,
        listen_backlog: int | None = None,
    ) -> None:
        super().__init__(config)
        self._grace = grace
        self._on_startup = on_startup
        self._listen_backlog = listen_backlog
        self._before_stop = before_stop
        self._on_signal = on_signal
        self._signals = signals
        #: Set once start-up is over, listening or not (`started` says which).
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        #: The signal that stopped the server, if one did.
        self.stopped_by: int | None = None

    def stop(self) -> None:
        """End serving (from the server's own event loop): the shutdown follows."""
        self.should_exit = True
        self._stop.set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_startup()
        await super().startup(sockets)
        if self._listen_backlog is not None and self.started:
            for sock in sockets or ():  # asyncio listened with `config.backlog`, its accept batch: queue more
                sock.listen(self._listen_backlog)
        self.ready.set()

    async def main_loop(self) -> None:
        if self._signals:  # the process's own server: uvicorn's loop, which refreshes the Date header
            await super().main_loop()
        else:  # one of several in this process: an event, not uvicorn's polling of `should_exit`
            await self._stop.wait()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn's, without raising the signal again once it has shut down (the caller exits with its status);
        nothing when the signals are the host process's (no `signals`)."""
        if not self._signals:
            yield
            return
        previous = {signum: signal.signal(signum, self.handle_exit) for signum in self._signals}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._on_signal(sig):
            self.stopped_by = sig
            super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        uvicorn_logger.info("Shutting down")  # uvicorn's own line
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        self._before_stop()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()
        # uvicorn signals neither of these, so poll briefly.
        with anyio.move_on_after(self._grace):
            while state.connections or state.tasks:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        for connection in list(state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        for task in list(state.tasks):
            task.cancel()
        with anyio.move_on_after(self._grace):
            while state.tasks:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        await self.lifespan.shutdown()


def transport_of(send: Callable[..., Any]) -> asyncio.BaseTransport | None:
    """The connection under an ASGI request, from the server's own `send`: to close it without finishing the body (an
    upstream dropping mid-stream, in the sandbox), which ASGI has no message for. uvicorn 0.54.0: the `send` it hands
    the app is a bound method of its request cycle (`RequestResponseCycle.send`), whose `transport` attribute is the
    connection's asyncio transport. None when `send` is not uvicorn's."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    return transport if isinstance(transport, asyncio.BaseTransport) else None


class ConnectionHooks(Protocol):
    """What `h11_protocol` tells of one connection after it was opened."""

    def read(self) -> None:
        """Bytes arrived and uvicorn handled them."""

    def lost(self) -> None:
        """The connection closed."""


#: Makes a connection's hooks: (its transport, how many connections its listener has open now, this one included,
#: whether it is waiting for a request's headers now).
HooksFactory = Callable[[asyncio.Transport, int, Callable[[], bool]], ConnectionHooks]


def h11_protocol(hooks: HooksFactory) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol (an `http=` for `uvicorn.Config`), telling `hooks` of each connection's life. uvicorn
    0.54.0: `H11Protocol` of the internal module `uvicorn.protocols.http.h11_impl`, overriding its
    `connection_made`, `data_received` and `connection_lost`, and reading its `connections` (the listener's open
    ones) and `conn` (h11 0.16.0's `h11.Connection`: `their_state` is `h11.IDLE` until a request's headers are
    complete)."""
    import h11  # imported here, as uvicorn does (measured: h11 and uvicorn's protocol cost a stdio start 9 ms)
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HookedH11Protocol(H11Protocol):
        _hooks: ConnectionHooks | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._hooks = hooks(transport, len(self.connections), self._awaiting_headers)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._hooks is not None:
                self._hooks.read()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._hooks is not None:
                self._hooks.lost()
            super().connection_lost(exc)

        def _awaiting_headers(self) -> bool:
            return self.conn.their_state is h11.IDLE

    return HookedH11Protocol
