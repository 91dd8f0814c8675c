"""Connections that must finish their request headers in time: uvicorn's h11 protocol with a header timeout
(uvicorn has none), for every HTTP listener this package runs (`/mcp`, the stdio-mode webhook listener)."""

from __future__ import annotations

import asyncio


class WaitingForHeaders:
    """The connections whose request headers are not complete yet, oldest first. When the process is out of file
    descriptors, the oldest make room for new connections: a client that sent its headers is never dropped."""

    def __init__(self) -> None:
        self._transports: dict[asyncio.BaseTransport, None] = {}

    def add(self, transport: asyncio.BaseTransport) -> None:
        self._transports[transport] = None

    def discard(self, transport: asyncio.BaseTransport) -> None:
        self._transports.pop(transport, None)

    def close_oldest(self) -> None:
        if self._transports:
            oldest = next(iter(self._transports))
            self.discard(oldest)
            oldest.close()


def header_timeout_protocol(seconds: float, waiting: WaitingForHeaders) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete within `seconds`
    (counted from the connection, or from a later request's first byte on a kept-alive connection), and listing
    such connections in `waiting` meanwhile."""
    import h11  # imported here, as uvicorn does: a stdio start does not need it
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:
                if self._header_timer is None and not self.transport.is_closing():
                    self._arm()
            else:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(seconds, self._expired)
            waiting.add(self.transport)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
                waiting.discard(self.transport)

        def _expired(self) -> None:
            self._header_timer = None
            waiting.discard(self.transport)
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol
