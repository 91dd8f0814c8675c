"""The management toolset: the organisation's setup, changed through Lexey's management agent."""

from __future__ import annotations

from typing import Annotated

from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Resolve
from mcp.types import CallToolResult

from ...management import not_applied
from ...models import ChatResult
from ...quoting import Fence
from ..consent import Confirmation, confirm_instruction, unconfirmed
from ..parameters import ChatMessage, OptionalConversationId
from ..registration import CONFIGURE, ToolSpec
from ..rendering import chat_text, result
from ..state import AppState, client_of
from .chat import send


async def configure_org(
    instruction: ChatMessage,
    ctx: Context[AppState],
    confirmation: Annotated[ElicitationResult[Confirmation], Resolve(confirm_instruction)],
    conversation_id: OptionalConversationId = None,
) -> Annotated[CallToolResult, ChatResult]:
    """Instruct Lexey's management agent in plain language; it changes the organisation's setup: business
    context, knowledge articles, branding, escalation rules; it also answers analytics questions ("How have we
    performed over the last 7 days?"). Replies with what it changed."""
    refused = unconfirmed(confirmation, "this instruction")
    if refused is not None:
        return refused
    reply = await send(client_of(ctx).management, instruction, conversation_id, ctx)
    if not_applied(reply.text):  # a tool error a model cannot miss; the reply stays whole in the structured content
        text = chat_text("NOT APPLIED: the management agent changed nothing; its reply", reply, Fence())
        return result(reply, text).model_copy(update={"is_error": True})
    return result(reply, chat_text("Management agent reply", reply, Fence()))


TOOLS = (ToolSpec(configure_org, "Configure the organisation", CONFIGURE, "management"),)
