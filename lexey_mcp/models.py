"""Result models shared by the client and the MCP tools (they become the tools' output schemas)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["complete", "error", "partial"]
PartialReason = Literal["timeout", "connection_lost", "ended_without_done", "reply_too_large"]


class StreamError(BaseModel):
    """An error event received inside the stream."""

    message: str
    code: str | None = None


class ChatResult(BaseModel):
    """One upstream reply stream, read to the end and folded."""

    text: str = Field(description="The whole reply: every text delta, in order.")
    conversation_id: str | None = Field(description="The conversation used or created.")
    outcome: Outcome = Field(
        description="complete: the stream finished normally; error: an error event arrived; "
        "partial: the stream ended, dropped or timed out early (text holds what arrived)."
    )
    partial_reason: PartialReason | None = Field(None, description="Why the stream ended early, when it did.")
    conversation_status: str | None = Field(None, description="The last status event's value, e.g. 'escalated'.")
    status_events: list[str] = Field(default_factory=list, description="Every status value, in order.")
    error: StreamError | None = Field(None, description="The in-stream error, if any.")
    events_received: int = Field(0, description="Events received, not counting the end marker.")
    skipped_events: int = Field(0, description="Events that could not be used (malformed or oversized).")
    last_event_id: int | None = Field(None, description="Highest event id seen.")
    missing_event_ids: list[int] = Field(
        default_factory=list, description="Event ids never received (first 1,000); non-empty means events were lost."
    )
    missing_event_count: int = Field(0, description="How many event ids are missing in all.")
    request_id: str | None = Field(None, description="The upstream X-Request-ID, for support tickets.")


class ToolStep(BaseModel):
    """A CRM tool Lexi started or completed."""

    tool: str
    status: str
    summary: str | None = None


class RateLimit(BaseModel):
    """Lexi's rate-limit headers. `reset` is a Unix timestamp (limits reset daily at midnight UTC)."""

    limit: int | None = None
    remaining: int | None = None
    reset: int | None = None


class LexiResult(ChatResult):
    """A Lexi reply: the chat fields plus Lexi's usage and reasoning metadata."""

    message_id: str | None = None
    credits_remaining: int | None = None
    tool_steps: list[ToolStep] = Field(default_factory=list)
    thinking: list[str] = Field(default_factory=list)
    rate_limit: RateLimit | None = None
    idempotency_key: str | None = Field(None, description="Send it again to retry without being charged twice.")


class Message(BaseModel):
    """One message of a conversation's history, as the API returns it (extra fields are kept)."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str
    createdAt: str | None = None


class ConversationMessages(BaseModel):
    """A conversation's history."""

    conversation_id: str
    messages: list[Message]


class Conversation(BaseModel):
    """A newly created conversation."""

    conversation_id: str
