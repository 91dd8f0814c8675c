"""The Lexi toolset: questions to LeadLex's CRM assistant."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import AfterValidator, Field

from ...arguments import plain_text
from ...models import LexiResult
from ...quoting import Fence
from ...validation import LEXI_MAX_MESSAGE_CHARS, LexiContext
from ..parameters import UUID, OptionalConversationId
from ..progress import progress
from ..registration import NEW_CONVERSATION, ToolSpec
from ..rendering import chat_text, result
from ..state import AppState, client_of


async def lexi_chat(
    message: Annotated[str, Field(min_length=1, max_length=LEXI_MAX_MESSAGE_CHARS), AfterValidator(plain_text)],
    ctx: Context[AppState],
    conversation_id: OptionalConversationId = None,
    context: LexiContext | None = None,
    allow_tools: Annotated[bool, Field(description="False: no CRM lookups.")] = True,
    idempotency_key: Annotated[
        str | None, Field(description="Reuse a result's key to retry without a second charge.", json_schema_extra=UUID)
    ] = None,
) -> Annotated[CallToolResult, LexiResult]:
    """Ask Lexi, LeadLex's CRM assistant, about contacts, companies, deals and matters (1-5 credits). Returns
    the answer, the CRM lookups it made, credits left and rate limits."""
    reply = await client_of(ctx).lexi_chat(
        message,
        conversation_id=conversation_id,
        context=context.model_dump(exclude_none=True) if context else None,
        allow_tools=allow_tools,
        idempotency_key=idempotency_key,
        on_text=progress(ctx),
    )
    return result(reply, chat_text("Lexi reply", reply, Fence()))


TOOLS = (ToolSpec(lexi_chat, "Ask Lexi (CRM assistant)", NEW_CONVERSATION, "lexi"),)
