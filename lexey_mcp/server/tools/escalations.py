"""The events toolset: escalations received as Lexey's signed webhooks (the feed lives in `lexey_mcp.events`)."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from ...events.model import DEFAULT_LIMIT, MAX_LIMIT, EscalationList
from ..registration import READ_LOCAL, ToolSpec
from ..state import AppState


async def list_escalations(
    ctx: Context[AppState],
    since: Annotated[
        str | None,
        Field(
            description="Only escalations at or after it.",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Annotated[CallToolResult, EscalationList]:
    """Conversations Lexey's agent handed to a human (received as signed webhooks), newest first, with the
    reason, the customer and the last messages; how many in all, and why none arrive if the feed is off.
    Subscribe to lexey://escalations for new ones."""
    from ...events.surface import escalations_result  # lazy: the feed's modules load only with the events toolset

    feed = ctx.request_context.lifespan_context.feed
    assert feed is not None  # registered only with the events toolset, which has a feed
    return await escalations_result(feed, since, limit)


TOOLS = (ToolSpec(list_escalations, "List escalations", READ_LOCAL, "events"),)
