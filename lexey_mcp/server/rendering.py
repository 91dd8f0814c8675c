"""A tool's result as it goes out: the structured model, and beside it the short text a text-only host shows the
model, every upstream reply in it fenced (`quoting.Fence`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mcp.types import CallToolResult, TextContent

from ..models import ChatResult, LexiResult, Schema
from ..quoting import Fence, one_line


def result(model: Schema, text: str, meta: dict[str, Any] | None = None) -> CallToolResult:
    """`meta`: what only a host's view reads (`view.py`)."""
    content: list[TextContent] = [TextContent(type="text", text=text)]
    return CallToolResult(content=content, structured_content=model.structured(), _meta=meta)


def chat_text(label: str, reply: ChatResult, fence: Fence, *, conversation: bool = True) -> str:
    """The short human-readable block beside the structured result: a bracketed line of what the reply's fields say
    (all a text-only host shows the model), then the reply. `conversation=False` where the call already names it."""
    status = reply.outcome if reply.partial_reason is None else f"{reply.outcome}: {reply.partial_reason}"
    notes = [f"outcome {status}"]
    if conversation:
        notes.append(f"conversation {reply.conversation_id}")
    if reply.conversation_status:
        notes.append(f"status {reply.conversation_status}")
    if reply.error is not None:
        notes.append(f"error: {reply.error.message}")
    if reply.missing_event_count:
        notes.append(f"{reply.missing_event_count} events missing")
    if reply.ignored_events:
        types = ", ".join(reply.ignored_event_types) or "unknown"
        notes.append(f"{reply.ignored_events} events of unknown types ignored ({types})")
    if reply.outcome == "complete" and not reply.text:
        notes.append("the reply has no text" + ("" if reply.ignored_events else " and no events were ignored"))
    if isinstance(reply, LexiResult):
        notes += lexi_notes(reply)
    return f"[{one_line(f'{label}; ' + ', '.join(notes))}]\n{fence(reply.text)}"


def lexi_notes(reply: LexiResult) -> list[str]:
    """What lexi_chat's description promises beside the answer: the CRM lookups, credits left, rate limits (and the
    key to retry with, when the reply is not complete)."""
    notes = [_lookups(reply)]
    if reply.credits_remaining is not None:
        notes.append(f"{reply.credits_remaining:,} credits left")
    limit = reply.rate_limit
    if limit is not None and limit.remaining is not None:
        of = f" of {limit.limit:,}" if limit.limit is not None else ""
        when = datetime.fromtimestamp(limit.reset, UTC).strftime("%Y-%m-%d %H:%M UTC") if limit.reset else None
        notes.append(f"rate limit: {limit.remaining:,}{of} requests left" + (f" until {when}" if when else ""))
    if reply.outcome != "complete" and reply.idempotency_key:
        notes.append(f"to retry without a second charge pass idempotency_key {reply.idempotency_key}")
    return notes


def _lookups(reply: LexiResult) -> str:
    """The CRM lookups Lexi made, each with its summary; a lookup started and never finished says so."""
    lookups: list[str] = []
    started: list[str] = []  # tools started and not (yet) finished
    for step in reply.tool_steps:
        if step.status == "started":
            started.append(step.tool)
            continue
        if step.tool in started:
            started.remove(step.tool)
        state = "" if step.status == "completed" else f"{step.status} "
        lookups.append(f"{step.tool} ({state}{step.summary})" if step.summary else f"{step.tool} {state}".strip())
    lookups += [f"{tool} (no result)" for tool in started]
    if reply.tool_steps_omitted:
        lookups.append(f"{reply.tool_steps_omitted} more steps")
    return f"CRM lookups: {'; '.join(lookups)}" if lookups else "no CRM lookups"
