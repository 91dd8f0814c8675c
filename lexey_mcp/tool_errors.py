"""A tool error as MCP carries it (`isError: true`, one text block): the one shape every refusal takes, whether a tool
answers it (server) or a middleware refuses the call before the tool runs (hosting, observability)."""

from __future__ import annotations

from mcp.types import CallToolResult, TextContent


def tool_error(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)
