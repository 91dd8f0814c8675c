"""The hardened accept path every HTTP listener of this process shares (`/mcp`, the stdio-mode webhook listener).

uvicorn alone waits forever for a request's headers and counts idle connections against its concurrency limit, so
connections that never send a request lock everyone out, and when file descriptors run out asyncio logs every failed
accept (thousands of lines a second). Here: uvicorn's h11 protocol with a header timeout; connections still waiting
for their request headers (idle kept-alive ones included) listed oldest first, and the oldest closed to make room
when a listener is at its connection cap or the process is out of descriptors, so a client that sends its request
promptly gets in however many idle or slow connections are open; the descriptor limit raised to its hard limit; and
the accept-failure log rate-limited. One `AcceptPath` per process: descriptors are the process's.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

try:
    import fcntl
    import termios
except ImportError:  # not POSIX: no count of unread bytes, so none is spared for them
    fcntl = termios = None  # type: ignore[assignment]

from .compat import h11_protocol
from .observability.logs import ThrottledLog
from .serving import Accepting

logger = logging.getLogger("lexey_mcp.http")

#: At most one accept-failure line per this many seconds (the rest are counted in the next line).
ACCEPT_LOG_INTERVAL = 5.0
#: Connections accepted at most per wake-up of a listener (asyncio accepts that many in one go, before any connection
#: could give way): uvicorn's 2,048 would take 2,048 descriptors at once.
ACCEPT_BATCH = 32
#: Connections the kernel queues for a listener until they are accepted (uvicorn's default): with the batch's 32, a
#: burst of 1,000 new clients had a third wait over a second for a SYN to be sent again.
LISTEN_BACKLOG = 2048
#: Batches of accepts whose descriptors may be held at once beyond the cap: a connection that gives way to a new one
#: frees its descriptor a few loop iterations after the new one took its own, and a listener under a flood accepts a
#: batch every iteration. Fewer, and the process runs out of descriptors, which pauses every listener's accepts for
#: a second (asyncio's retry delay).
BATCHES_IN_FLIGHT = 4
#: Descriptors kept out of the connections' reach at the least, besides the batches in flight (a quarter of the limit
#: when that is more).
FD_HEADROOM = 64


class WaitingForHeaders:
    """The connections whose request headers are not complete yet, oldest first. They make room for new connections:
    a client that sent its headers is never dropped."""

    def __init__(self) -> None:
        self._transports: dict[asyncio.BaseTransport, None] = {}

    def __len__(self) -> int:
        return len(self._transports)

    def add(self, transport: asyncio.BaseTransport) -> None:
        self._transports[transport] = None

    def discard(self, transport: asyncio.BaseTransport) -> None:
        self._transports.pop(transport, None)

    def close_oldest(self, spare: asyncio.BaseTransport | None = None) -> bool:
        """Close the oldest connection still waiting for headers, never `spare` nor one whose bytes are waiting to
        be read (a prompt client whose request this loop has not read yet, under a flood of new connections);
        False when there is none."""
        for transport in self._transports:
            if transport is not spare and not _has_unread_bytes(transport):
                self.discard(transport)
                transport.close()
                return True
        return False


def _has_unread_bytes(transport: asyncio.BaseTransport) -> bool:
    sock = transport.get_extra_info("socket")
    if sock is None or fcntl is None:
        return False
    try:
        pending = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return False
    return int.from_bytes(pending, sys.byteorder) > 0


class AcceptFailures:
    """An event-loop exception handler for accept failures (EMFILE, ENFILE, ENOBUFS, ENOMEM): each closes the oldest
    connection still waiting for its headers, and they are logged at most once per `interval`, with a count of those
    not shown. Everything else goes to the loop's `previous` handler (asyncio's default when it had none)."""

    def __init__(
        self,
        waiting: WaitingForHeaders,
        interval: float = ACCEPT_LOG_INTERVAL,
        previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None,
    ) -> None:
        self._waiting = waiting
        self._log = ThrottledLog(logger, interval)
        self._previous = previous

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            if self._previous is not None:  # the handler the loop had: the host process's, where it set one
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self._waiting.close_oldest()
        self._log.log(logging.ERROR, "cannot accept connections: %s", context.get("exception"))


def raise_fd_limit() -> int | None:
    """Raise this process's open-file limit to its hard limit (many clients, each with a socket); the limit now in
    force (None: unknown or unlimited)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError):
            logger.debug("could not raise the open-file limit from %d to %d", soft, hard)
    return None if soft == resource.RLIM_INFINITY else soft


def connection_cap(configured: int, fd_limit: int | None) -> int:
    """Connections a listener holds before the oldest waiting for headers gives way: `configured`, and no more than
    the descriptor limit less a headroom, so connections never take the descriptors the server's own work needs (its
    event store, its upstream requests)."""
    if fd_limit is None:
        return configured
    return max(1, min(configured, fd_limit - max(FD_HEADROOM + BATCHES_IN_FLIGHT * ACCEPT_BATCH, fd_limit // 4)))


class AcceptPath:
    """What every listener of this process shares: the connections waiting for headers, and the accept-failure
    handler on the running loop (`install`, from each listener's start-up)."""

    def __init__(self) -> None:
        self.waiting = WaitingForHeaders()
        self._installed: asyncio.AbstractEventLoop | None = None
        self._fd_limit: int | None = None

    def install(self) -> None:
        """Raise the descriptor limit and handle accept failures on the running loop (once per loop)."""
        loop = asyncio.get_running_loop()
        if self._installed is loop:
            return
        self._fd_limit = raise_fd_limit()
        loop.set_exception_handler(AcceptFailures(self.waiting, previous=loop.get_exception_handler()))
        self._installed = loop

    def accepting(self, seconds: float, max_connections: int) -> Accepting:
        """A listener's connections taken through this path (`protocol`), for `serving.uvicorn_server`."""
        return Accepting(self.protocol(seconds, max_connections), ACCEPT_BATCH, LISTEN_BACKLOG, self.install)

    def protocol(self, seconds: float, max_connections: int) -> type[asyncio.Protocol]:
        """uvicorn's h11 protocol, closing a connection whose request headers are not complete within `seconds`
        (counted from the connection, or from a later request's first byte on a kept-alive connection), listing such
        connections in `waiting` meanwhile, and, when a new connection finds `max_connections` open on its listener
        (fewer when the descriptor limit is low: `connection_cap`), closing the oldest of them."""
        full = ThrottledLog(logger, ACCEPT_LOG_INTERVAL)

        def hooks(transport: asyncio.Transport, open_connections: int, awaiting: Callable[[], bool]) -> HeaderTimer:
            cap = connection_cap(max_connections, self._fd_limit)
            if open_connections > cap:
                self.waiting.close_oldest(spare=transport)
                full.log(logging.WARNING, "%d connections open: closed the oldest waiting for its headers", cap)
            return HeaderTimer(transport, awaiting, seconds, self.waiting)

        return h11_protocol(hooks)


class HeaderTimer:
    """One connection's header timeout: armed while it waits for a request's headers (`awaiting`), the connection
    listed in `waiting` meanwhile; closes it when they are not complete within `seconds`."""

    def __init__(
        self, transport: asyncio.Transport, awaiting: Callable[[], bool], seconds: float, waiting: WaitingForHeaders
    ) -> None:
        self._transport = transport
        self._awaiting = awaiting
        self._seconds = seconds
        self._waiting = waiting
        self._timer: asyncio.TimerHandle | None = None
        self._arm()

    def read(self) -> None:
        if self._awaiting():
            if self._timer is None and not self._transport.is_closing():
                self._arm()
        else:
            self._disarm()

    def lost(self) -> None:
        self._disarm()

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._seconds, self._expired)
        self._waiting.add(self._transport)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._waiting.discard(self._transport)

    def _expired(self) -> None:
        self._timer = None
        self._waiting.discard(self._transport)
        if self._awaiting() and not self._transport.is_closing():
            self._transport.close()


#: This process's accept path.
accept_path = AcceptPath()
