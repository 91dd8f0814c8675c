"""One message to a Lexey chat agent (the customer-facing one or the management one), as the tools send it."""

from __future__ import annotations

from mcp.server.mcpserver import Context

from ...client import ChatAPI
from ...models import ChatResult
from ...validation import check_uuid
from ..progress import progress
from ..state import AppState


async def send(api: ChatAPI, message: str, conversation_id: str | None, ctx: Context[AppState]) -> ChatResult:
    """`message` to `api`'s agent, in a new conversation when none is given: the whole reply, with progress."""
    cid = check_uuid(conversation_id) if conversation_id is not None else await api.create_conversation()
    return await api.send_message(cid, message, on_text=progress(ctx))
