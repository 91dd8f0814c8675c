"""The one choke point for what a request answers: every string redacted of the request's secrets and of key-shaped
text, then a tool's long text blocks cut to LEXEY_MAX_RESULT_CHARS."""

from __future__ import annotations

from typing import Any

from mcp import MCPError
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext
from pydantic import BaseModel

from ..quoting import Fence
from ..redaction import redact, redact_tree
from .state import AppState, request_secrets

# What a protocol-era elicitation round carries back and forth: opaque to us, and never upstream text.
_ROUND_TRIP = frozenset({"requestState", "inputRequests", "resultType"})
#: Requests whose answers carry nothing of a request's secrets or of upstream text.
_UNTOUCHED = frozenset({"initialize", "ping", "tools/list", "server/discover"})


async def redact_outgoing(ctx: ServerRequestContext[AppState, Any], call_next: CallNext) -> Any:
    """Middleware: results, tool errors and protocol errors of every request pass through `outgoing`."""
    if ctx.request_id is None or ctx.method in _UNTOUCHED:
        return await call_next(ctx)
    try:
        result = await call_next(ctx)
    except MCPError as exc:
        secrets = request_secrets(ctx)
        error = exc.error
        raise MCPError(error.code, redact(error.message, secrets), redact_tree(error.data, secrets)) from None
    if isinstance(result, BaseModel):
        result = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    return outgoing(ctx, result) if isinstance(result, dict) else result


def outgoing(ctx: ServerRequestContext[AppState, Any], result: dict[str, Any]) -> dict[str, Any]:
    """`result` as it may leave: redacted, and a tool's long text blocks cut."""
    secrets = request_secrets(ctx)
    result = {k: v if k in _ROUND_TRIP else redact_tree(v, secrets) for k, v in result.items()}
    if ctx.method == "tools/call":
        limit = ctx.lifespan_context.client.settings.max_result_chars
        for block in result.get("content") or []:
            text = block.get("text") if isinstance(block, dict) else None
            if isinstance(text, str) and len(text) > limit:
                block["text"] = _cut(text, limit)
    return result


def _cut(text: str, limit: int) -> str:
    """`text` cut at `limit` characters, a reply open there closed, then a note saying how to get the rest."""
    closing = "".join(f"\n{Fence.end(nonce)}" for nonce in reversed(Fence.open_at(text, limit)))
    return (
        f"{text[:limit]}{closing}\n[Cut here: {limit:,} of {len(text):,} characters shown (LEXEY_MAX_RESULT_CHARS). "
        "The structured content has the whole result; for a long history ask get_conversation_messages "
        "for fewer messages (limit, before).]"
    )
