"""Serving an ASGI app with uvicorn in this process, on sockets bound beforehand (`listeners.listen`): the HTTP
transport, the sandbox and the webhook receiver are made, started, awaited until ready and stopped the same way.

A listener taking connections from anyone takes them through the accept path every such listener of this process
shares (`header_timeout.accept_path.accepting`: a header timeout, idle connections giving way to new ones,
descriptor exhaustion handled).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.types import ASGIApp

from . import interrupt
from .compat import QuietConfig, UvicornServer


@dataclass(frozen=True)
class Accepting:
    """How a listener takes its connections."""

    #: uvicorn's `http=`: the protocol each connection speaks.
    protocol: type[asyncio.Protocol]
    #: Connections accepted at most per wake-up (asyncio takes uvicorn's `backlog=` for that, and for the listen
    #: backlog).
    batch: int
    #: The listen backlog, set once the listener listens: connections the kernel completes and queues meanwhile.
    queue: int
    #: Run on the event loop before the listener listens.
    install: Callable[[], None]


def uvicorn_server(
    app: ASGIApp,
    *,
    grace: float,
    accepting: Accepting | None = None,
    before_stop: Callable[[], None] = lambda: None,
    on_signal: Callable[[int], bool] | None = None,
    **options: Any,
) -> UvicornServer:
    """A uvicorn server for `app`, not started: h11 without websockets, leaving the process's logging alone, with
    `options` for `uvicorn.Config` on top; `accepting`: taking connections that way. On stopping, its open requests get
    `grace` seconds to end before they are cut (`UvicornServer`), after `before_stop` (ending streams that would
    never end by themselves); `on_signal`: it serves the process, and SIGINT or SIGTERM stop it when that says so
    (`interrupt.first_signal`), else it is stopped by leaving `serving`."""
    if accepting is not None:
        options |= {"http": accepting.protocol, "backlog": accepting.batch}
    config = QuietConfig(app, **({"http": "h11", "ws": "none", "log_config": None, "lifespan": "off"} | options))
    return UvicornServer(
        config,
        grace=grace,
        on_startup=accepting.install if accepting is not None else lambda: None,
        listen_backlog=accepting.queue if accepting is not None else None,
        before_stop=before_stop,
        signals=interrupt.SIGNALS if on_signal is not None else (),
        on_signal=on_signal or (lambda signum: True),
    )


@asynccontextmanager
async def serving(server: UvicornServer, sockets: list[socket.socket], what: str) -> AsyncIterator[None]:
    """Run `server` on `sockets` in this event loop (asyncio, as uvicorn requires) for the `async with`: entered once
    it listens (`OSError` naming `what`, "the sandbox", when it cannot), left once it has shut down."""

    async def serve() -> None:
        try:
            # Shielded: leaving on a cancellation must still run the (time-bounded) shutdown, which `stop` triggers,
            # or the listening sockets and open connections would leak.
            with anyio.CancelScope(shield=True):
                await server.serve(sockets)
        finally:
            server.ready.set()  # however it ended

    async with anyio.create_task_group() as group:
        group.start_soon(serve)
        try:  # stopped however this ends, a cancellation while it starts too (or the shielded server runs on)
            await server.ready.wait()
            if not server.started:
                raise OSError(f"{what} did not start")
            yield
        finally:
            server.stop()
