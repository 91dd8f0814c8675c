"""Result models shared by the client and the MCP tools (they become the tools' output schemas)."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from .redaction import redact_tree


def _drop_titles(schema: dict[str, Any]) -> None:
    """Pydantic titles every model and field after its name: noise in a schema an LLM reads."""
    schema.pop("title", None)
    for field in schema.get("properties", {}).values():
        field.pop("title", None)


class Schema(BaseModel):
    """Base of every model that becomes part of a tool's schema."""

    # Validators are built on first use, not at import: a start needs none of them, as the tools' output schemas
    # come derived (server/output_schemas.py; BENCHMARKS.md, cold start).
    model_config = ConfigDict(json_schema_extra=_drop_titles, defer_build=True)

    def structured(self) -> dict[str, Any]:
        """A tool's structured content: a field at its default (empty, zero, null) is left out, as the output
        schema's `default` says what it is."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def redacted(self, secrets: list[str]) -> Self:
        """This model with every string redacted of `secrets` (and of key-shaped text): for what leaves the process
        other than through the server's one outgoing choke point (a report file, a rendered page)."""
        return self.model_validate(redact_tree(self.model_dump(mode="json"), secrets))


Outcome = Literal["complete", "error", "partial"]
PartialReason = Literal["timeout", "connection_lost", "ended_without_done", "reply_too_large"]


class StreamError(Schema):
    """An error event received inside the stream."""

    message: str
    code: str | None = None


class ChatResult(Schema):
    """One upstream reply stream, read to the end and folded."""

    text: str = Field(description="The whole reply.")
    conversation_id: str | None = Field(None, description="The conversation used or created.")
    outcome: Outcome = Field(
        description="complete; error (an error event arrived); partial (ended early: text is what arrived)."
    )
    partial_reason: PartialReason | None = None
    conversation_status: str | None = Field(None, description="Last status, e.g. 'escalated'.")
    status_events: list[str] = Field(default_factory=list, description="The last 100 statuses.")
    status_events_omitted: int = Field(0, description="Earlier statuses not listed.")
    error: StreamError | None = None
    events_received: int = 0
    skipped_events: int = Field(0, description="Malformed or oversized events.")
    ignored_events: int = Field(0, description="Events of kinds this server does not know.")
    ignored_event_types: list[str] = Field(default_factory=list, description="Their kinds (first 10).")
    last_event_id: int | None = None
    missing_event_ids: list[int] = Field(default_factory=list, description="Lost event ids (first 1,000).")
    missing_event_count: int = 0
    request_id: str | None = None


class ToolStep(Schema):
    """A CRM tool Lexi started or completed."""

    tool: str
    status: str
    summary: str | None = None


class RateLimit(Schema):
    """Lexi's rate-limit headers. `reset` is a Unix timestamp (limits reset daily at midnight UTC)."""

    limit: int | None = None
    remaining: int | None = None
    reset: int | None = None


class LexiResult(ChatResult):
    """A Lexi reply: the chat fields plus Lexi's usage and reasoning metadata."""

    message_id: str | None = None
    credits_remaining: int | None = None
    tool_steps: list[ToolStep] = Field(default_factory=list, description="The first 200.")
    tool_steps_omitted: int = 0
    thinking: list[str] = Field(default_factory=list, description="The first 200 parts.")
    thinking_omitted: int = 0
    rate_limit: RateLimit | None = None
    idempotency_key: str | None = Field(None, description="Reuse to retry without a second charge.")


class Message(Schema):
    """One message of a conversation's history, as the API returns it (extra fields are kept)."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_drop_titles)

    role: str
    content: str
    createdAt: str | None = None


class ConversationMessages(Schema):
    """A conversation's history."""

    conversation_id: str
    messages: list[Message]


class Conversation(Schema):
    """A newly created conversation."""

    conversation_id: str
