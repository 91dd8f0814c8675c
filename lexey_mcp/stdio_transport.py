"""Serving MCP over stdio with bounds: a line cap and a limit on requests in flight.

The SDK's stdio transport reads a line however long it grows and starts a task for every request. Here a line
longer than `max_line_bytes` is skipped to its newline and answered with a JSON-RPC error (the connection stays
open); a request beyond `max_in_flight` unanswered ones, or one reusing the id of a request still in flight (the
SDK would never answer the first), is answered with an error instead of being run.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Any

import anyio
import anyio.to_thread
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

from .compat import lowlevel_server

#: Method of the stand-in message for a line that was too long (never sent by a client: `/` is not in MCP names).
_TOO_LONG = "lexey/line-too-long"
_ID = re.compile(rb'"id"\s*:\s*(-?\d{1,18}|"(?:[^"\\]|\\.){0,200}")')
_PREFIX_BYTES = 64 * 1024
_CHUNK = 1024 * 1024

# JSON-RPC error codes
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
SERVER_BUSY = -32000


class CappedLines:
    """A text file whose `readline` never returns more than `limit` bytes: a longer line is read to its end in
    chunks, dropped, and replaced by a one-line stand-in message carrying its id (when found near its start)."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self._raw = raw
        self._limit = limit

    def readline(self) -> str:
        line = self._raw.readline(self._limit + 1)
        if len(line) <= self._limit or line.endswith(b"\n"):
            return line.decode("utf-8", errors="replace")
        found = _ID.search(line[:_PREFIX_BYTES])
        size = len(line)
        while line and not line.endswith(b"\n"):
            line = self._raw.readline(_CHUNK)
            size += len(line)
        request_id = found.group(1).decode("utf-8", errors="replace") if found else "null"
        return f'{{"jsonrpc":"2.0","method":"{_TOO_LONG}","params":{{"id":{request_id},"bytes":{size}}}}}\n'


class _Lines:
    """The lines of `CappedLines` for the SDK's reader (`async for line in stdin`), each read in a worker thread
    that a cancellation abandons: a read blocked on stdin cannot be interrupted, and waiting for it would hold up
    a Ctrl-C until the host writes or closes stdin."""

    def __init__(self, lines: CappedLines) -> None:
        self._lines = lines

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        line = await anyio.to_thread.run_sync(self._lines.readline, abandon_on_cancel=True)
        if not line:
            raise StopAsyncIteration
        return line


def _stdin(limit: int) -> anyio.AsyncFile[str]:
    # A private duplicate: fd 0 itself is left alone (the SDK diverts only the streams it opens).
    raw = os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=_CHUNK)
    return _Lines(CappedLines(raw, limit))  # type: ignore[return-value]  # a file as far as the SDK's reader cares


def _error(request_id: types.RequestId | None, code: int, message: str) -> SessionMessage:
    error = types.ErrorData(code=code, message=message)
    return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error))


def _key(request_id: Any) -> str:
    return str(request_id)


@asynccontextmanager
async def bounded_stdio_server(
    max_line_bytes: int, max_in_flight: int
) -> AsyncIterator[
    tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]
]:
    """`mcp.server.stdio.stdio_server`, with a line cap and a bound on requests in flight."""
    in_flight: set[str] = set()
    to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](0)
    async with stdio_server(stdin=_stdin(max_line_bytes)) as (sdk_read, sdk_write):

        async def inbound() -> None:
            async with to_server:
                async for item in sdk_read:
                    answer = _refusal(item, in_flight, max_line_bytes, max_in_flight)
                    if answer is not None:
                        await sdk_write.send(answer)
                    else:
                        await to_server.send(item)

        async def outbound() -> None:
            async with from_server:
                async for item in from_server:
                    message = item.message
                    if isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
                        in_flight.discard(_key(message.id))
                    await sdk_write.send(item)

        async with sdk_write, anyio.create_task_group() as group:  # closing sdk_write ends the SDK's writer
            group.start_soon(inbound)
            group.start_soon(outbound)
            try:
                yield server_reads, server_writes
            finally:
                group.cancel_scope.cancel()


def _refusal(
    item: SessionMessage | Exception, in_flight: set[str], max_line_bytes: int, max_in_flight: int
) -> SessionMessage | None:
    """The error answering `item` instead of the server, or None to pass it on (tracking requests in flight)."""
    if isinstance(item, Exception):
        return _error(None, PARSE_ERROR, "Parse error: each line must be one JSON-RPC message")
    message = item.message
    if isinstance(message, types.JSONRPCNotification):
        if message.method == _TOO_LONG:
            params = message.params or {}
            return _error(
                params.get("id"),
                PARSE_ERROR,
                f"Message too long: {params.get('bytes')} bytes; the limit is {max_line_bytes} "
                "(LEXEY_MCP_MAX_LINE_BYTES). The message was skipped; the connection stays open.",
            )
        if message.method == "notifications/cancelled" and message.params:
            in_flight.discard(_key(message.params.get("requestId")))
        return None
    if not isinstance(message, types.JSONRPCRequest):
        return None
    key = _key(message.id)
    if key in in_flight:
        return _error(
            message.id,
            INVALID_REQUEST,
            f"Request id {key} is already in use by a request in flight: use a new id for each request.",
        )
    if len(in_flight) >= max_in_flight:
        return _error(
            message.id,
            SERVER_BUSY,
            f"Too many requests in flight ({max_in_flight}, LEXEY_MCP_MAX_IN_FLIGHT): wait for an answer, then retry.",
        )
    in_flight.add(key)
    return None


async def serve(server: MCPServer[Any], max_line_bytes: int, max_in_flight: int) -> None:
    """`MCPServer.run_stdio_async`, over the bounded transport (the SDK offers no public hook for a transport)."""
    lowlevel = lowlevel_server(server)
    async with bounded_stdio_server(max_line_bytes, max_in_flight) as (read, write):
        await lowlevel.run(read, write, lowlevel.create_initialization_options())
