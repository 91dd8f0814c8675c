"""The event feed on an `MCPServer`: the `list_escalations` tool, the `lexey://escalations` resource, the
webhook route, legacy `resources/subscribe`, and announcements after tool calls that add customer messages.

2026-07-28 clients subscribe with `subscriptions/listen`, served by the SDK from the bus given to `MCPServer`
(`MCPServer(subscriptions=feed.bus)`); clients on earlier protocol versions use `resources/subscribe`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from typing import Any

from mcp.server import MCPServer, ServerRequestContext
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    CallToolResult,
    EmptyResult,
    SubscribeRequestParams,
    TextContent,
    UnsubscribeRequestParams,
)

from ..compat import connection_of, lowlevel_server
from ..errors import LexeyError, LexeyInputError
from ..paths import WEBHOOK_PATH
from ..quoting import Fence, one_line
from ..toolsets import CONVERSATION_MESSAGES_URI, ESCALATIONS_URI
from ..validation import check_uuid
from .bus import MAX_LEGACY_SUBSCRIPTIONS
from .feed import EventFeed
from .model import DEFAULT_LIMIT, EscalationList, conversation_uri, parse_time
from .store import EventStoreUnavailable

logger = logging.getLogger("lexey_mcp.events")


def _summary(listing: EscalationList, fence: Fence) -> str:
    """list_escalations' text: what the structured content says, each escalation's messages quoted."""
    found = listing.escalations
    if not found:
        text = "No escalations yet." if listing.not_receiving is None else "No escalations."
    else:
        more = "; more with a larger limit" if listing.more else ""
        text = f"{len(found)} of {listing.total} escalations, newest first{more}."
    if listing.not_receiving is not None:
        text += f" This server receives none: {listing.not_receiving}"
    for e in found:
        who = e.customer_identifier or "unknown customer"
        about = f"{e.escalated_at} {e.conversation_id}: {e.reason or 'no reason given'} ({who})"
        if e.test is not None:
            about += f"; a test run: suite {e.test.suite!r}, case {e.test.case!r}"
        lines = "\n".join(f"{m.role or 'unknown'}: {m.content or ''}" for m in e.messages)
        text += f"\n[{one_line(about)}]" + (f"\n{fence(lines)}" if lines else "")
    return text


async def escalations_result(feed: EventFeed, since: str | None, limit: int) -> CallToolResult:
    """`list_escalations`: the latest escalations at or after `since`, newest first. Bad arguments or an
    unreachable store raise `LexeyError`, which the server maps to a tool error like every other tool's."""
    start: float | None = None
    if since is not None:
        try:
            start = parse_time(since).timestamp()
        except ValueError:
            example = "2026-11-30T09:00:00Z"
            raise LexeyInputError(f"since must be an ISO 8601 date-time such as {example} (got {since!r}).") from None
    try:
        listing = await feed.listing(start, limit)
    except EventStoreUnavailable as exc:
        raise LexeyError(f"Escalations cannot be read now: {str(exc).rstrip('.')}.") from None
    return CallToolResult(
        content=[TextContent(type="text", text=_summary(listing, Fence()))], structured_content=listing.structured()
    )


def install(server: MCPServer[Any], feed: EventFeed, message_tools: Collection[str]) -> None:
    """Register the events surface on `server` (which must have been built with `subscriptions=feed.bus`); the
    `list_escalations` tool is in the server's tool table, over `escalations_result`. A call of one of
    `message_tools` announces the conversation in its result."""

    @server.resource(
        ESCALATIONS_URI,
        name="escalations",
        title="Escalations",
        description=f"The latest {DEFAULT_LIMIT} escalations as JSON, newest first; updated when one arrives.",
        mime_type="application/json",
    )
    async def escalations() -> str:
        try:
            return json.dumps((await feed.listing(None, DEFAULT_LIMIT)).structured(), indent=2)
        except EventStoreUnavailable as exc:
            raise ResourceError(f"Escalations cannot be read now: {str(exc).rstrip('.')}.") from None

    server.custom_route(WEBHOOK_PATH, methods=["POST"], include_in_schema=False)(feed.receiver.handle)

    async def subscribe(ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        uri = str(params.uri)
        if not _served(uri):
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"Only {ESCALATIONS_URI} and {CONVERSATION_MESSAGES_URI} (a UUID) can be subscribed to.",
            )
        if not feed.legacy.add(connection_of(ctx.session), uri):
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"This session already has {MAX_LEGACY_SUBSCRIPTIONS} subscriptions: unsubscribe from one "
                "first.",
            )
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        feed.legacy.remove(connection_of(ctx.session), str(params.uri))
        return EmptyResult()

    # MCPServer has no API for these legacy methods; its low-level server does (and then advertises
    # `resources.subscribe` to 2025 clients, which is true when there are sessions to notify).
    if feed.options.sessions:
        lowlevel = lowlevel_server(server)
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    server.middleware.append(_announce_customer_messages(feed, frozenset(message_tools)))


def _served(uri: str) -> bool:
    """Whether `uri` is a resource this server serves (and announces)."""
    if uri == ESCALATIONS_URI:
        return True
    prefix, suffix = CONVERSATION_MESSAGES_URI.partition("{")[0], CONVERSATION_MESSAGES_URI.rpartition("}")[2]
    if not (uri.startswith(prefix) and uri.endswith(suffix)):
        return False
    try:
        check_uuid(uri[len(prefix) : -len(suffix)])
    except LexeyInputError:
        return False
    return True


def _announce_customer_messages(feed: EventFeed, message_tools: frozenset[str]) -> Any:
    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: Any) -> Any:
        result = await call_next(ctx)
        params = ctx.params
        if ctx.method == "tools/call" and isinstance(params, Mapping) and params.get("name") in message_tools:
            structured = result.get("structuredContent") if isinstance(result, Mapping) else None
            cid = structured.get("conversation_id") if isinstance(structured, Mapping) else None
            if isinstance(cid, str) and not result.get("isError"):
                await feed.announce(conversation_uri(cid))
        return result

    return middleware
