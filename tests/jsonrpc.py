"""Raw JSON-RPC, for tests that speak MCP's wire themselves: the initialize request, and the headers streamable HTTP
asks of a POST."""

from __future__ import annotations

from typing import Any

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def initialize(protocol: str = "2025-06-18", client: str = "probe") -> dict[str, Any]:
    """An `initialize` request (id 1) from a client asking for `protocol`."""
    params = {"protocolVersion": protocol, "capabilities": {}, "clientInfo": {"name": client, "version": "1"}}
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
