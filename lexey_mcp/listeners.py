"""Listening sockets for every listener (the HTTP transport, the sandbox, the webhook receiver), bound before
anything says it serves: a port that cannot be had is one line naming it and what to do (`PortUnavailable`), never
a traceback."""

from __future__ import annotations

import argparse
import errno
import socket

MAX_PORT = 65535


class PortUnavailable(OSError):
    """A listener cannot have its port; `str()` is one line naming the port and what to do."""


def port_number(value: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 (any free port) to {MAX_PORT}, not {value!r}")
    return port


def listen(host: str, port: int, what: str, option: str | None = None) -> list[socket.socket]:
    """Sockets bound to `port` (0: a free port) on every address `host` names, not yet listening (the server
    calls `listen`). The error names the listener (`what`: "the sandbox", say) and the option that sets its port."""
    again = f"choose another port with {option}" if option else "choose another port"
    if not 0 <= port <= MAX_PORT:
        raise PortUnavailable(f"{what} cannot listen on port {port}: {again}, from 0 (any free one) to {MAX_PORT}")
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise PortUnavailable(
            f"{what} cannot listen on {host}: {exc.strerror}; choose an address of this machine"
        ) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            # An explicit IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on accepted sockets whose proto says
            # TCP, and without it every response pays a 40 ms delayed-ACK stall.
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio does: an IPv6 socket beside the IPv4 one, not over it
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:  # every address on the port the first one got
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            try:
                sock.bind(address)
            except OSError as exc:
                raise _unavailable(what, host, int(address[1]), exc, again) from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _unavailable(what: str, host: str, port: int, exc: OSError, again: str) -> PortUnavailable:
    where = f"{what} cannot listen on {host} port {port}"
    if exc.errno == errno.EADDRINUSE:
        return PortUnavailable(f"{where}: another program uses it; stop that program or {again}")
    if exc.errno == errno.EACCES:
        return PortUnavailable(f"{where}: ports below 1024 need administrator rights; {again}, 1024 or above")
    if exc.errno == errno.EADDRNOTAVAIL:
        return PortUnavailable(f"{where}: {host} is not an address of this machine; choose one that is")
    return PortUnavailable(f"{where}: {exc.strerror or exc}")


def unavailable_port(exc: BaseException) -> PortUnavailable | None:
    """The `PortUnavailable` that `exc` is, or holds in its exception groups (task groups wrap what they raise)."""
    if isinstance(exc, PortUnavailable):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = unavailable_port(inner)
            if found is not None:
                return found
    return None
