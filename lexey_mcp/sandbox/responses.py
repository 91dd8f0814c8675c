"""The streaming response: writes a planned SSE body, watches for the client leaving, aborts on cue."""

from __future__ import annotations

import asyncio
import logging

import anyio
from starlette.types import Message, Receive, Scope, Send

from .. import compat
from .faults import StreamPlan, writes
from .store import CloseReason, Store

logger = logging.getLogger("lexey_mcp.sandbox")

RAW_SEND = "lexey_sandbox.raw_send"
_DISCONNECT_WAIT = 1.0


def _close_transport(scope: Scope, *, abort: bool) -> bool:
    """Close the TCP connection under a response without finishing the chunked body, through the server's own
    `send` (`compat.transport_of`), stashed in the scope by the outermost app."""
    send = scope.get(RAW_SEND)
    transport = compat.transport_of(send) if send is not None else None
    if transport is None:
        return False
    if abort and isinstance(transport, asyncio.Transport):
        transport.abort()
    else:
        transport.close()
    return True


class _Dropped(Exception):
    """Raised only when the transport cannot be reached; the server then closes the connection itself."""


async def _wait_disconnect(receive: Receive) -> None:
    with anyio.move_on_after(_DISCONNECT_WAIT):
        while (await receive())["type"] != "http.disconnect":
            pass


class SSEStream:
    """An ASGI response for a 200 `text/event-stream` body shaped by a `StreamPlan`."""

    def __init__(self, store: Store, plan: StreamPlan, *, headers: dict[str, str], content_type: str | None) -> None:
        self._store = store
        self._plan = plan
        self._headers = {"content-type": content_type or "text/event-stream", "cache-control": "no-cache", **headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self._headers.items()],
        }
        reason: CloseReason = "cancelled"
        client_left = finished = dropping = False
        group_scope: anyio.CancelScope | None = None
        try:
            async with anyio.create_task_group() as group:
                group_scope = group.cancel_scope
                self._store.stream_opened(group_scope)

                async def watch() -> None:
                    nonlocal client_left
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    client_left = True
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                try:
                    await send(start)
                    dropping = await self._write(send)
                    finished = not dropping
                except OSError:
                    client_left = True
                if dropping:
                    if not _close_transport(scope, abort=False):
                        raise _Dropped
                    await anyio.sleep(_DISCONNECT_WAIT)  # the watcher cancels this once the connection is gone
                group.cancel_scope.cancel()
            if dropping:
                reason = "dropped"
            elif finished:
                reason = "completed"
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            elif client_left:
                reason = "disconnected"
            else:  # cancelled by the sandbox shutting down: force the connection closed
                _close_transport(scope, abort=True)
                await _wait_disconnect(receive)
        except BaseException:
            if dropping:
                reason = "dropped"
            raise
        finally:
            if group_scope is not None:
                self._store.stream_closed(group_scope, reason)
                logger.debug("stream closed: %s", reason)

    async def _write(self, send: Send) -> bool:
        """Send the planned events; True when the plan says to drop the connection now."""
        plan = self._plan
        first = True
        for index in range(len(plan.events) + 1):
            if plan.stall_after == index:
                await anyio.sleep(plan.stall_seconds)
            if plan.drop_after == index:
                return True
            if index == len(plan.events):
                return False
            if index and plan.delay:
                await anyio.sleep(plan.delay)
            for body in writes(plan, index):
                if not first and plan.drip:
                    await anyio.sleep(plan.drip)
                first = False
                await send({"type": "http.response.body", "body": body, "more_body": True})
        return False
