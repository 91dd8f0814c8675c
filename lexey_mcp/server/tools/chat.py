"""One message to a Lexey chat agent (the customer-facing one or the management one), as a tool answers it."""

from __future__ import annotations

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult

from ...client import ChatAPI
from ...quoting import Fence
from ...validation import check_uuid
from ..progress import progress
from ..rendering import chat_text, result
from ..state import AppState


async def chat(
    api: ChatAPI, who: str, message: str, conversation_id: str | None, ctx: Context[AppState]
) -> CallToolResult:
    """`message` to `api`'s agent, in a new conversation when none is given; the whole reply, labelled `who`."""
    cid = check_uuid(conversation_id) if conversation_id is not None else await api.create_conversation()
    reply = await api.send_message(cid, message, on_text=progress(ctx))
    return result(reply, chat_text(who, reply, Fence()))
