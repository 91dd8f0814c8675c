"""The argument types and limits tools share, as their input schemas state them."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from ..arguments import plain_text

MAX_CHAT_MESSAGE_CHARS = 100_000

# UUIDs are checked by the client before any request; the schema only says what is expected.
UUID = {"format": "uuid"}
ConversationId = Annotated[str, Field(json_schema_extra=UUID)]
OptionalConversationId = Annotated[
    str | None, Field(description="Omit to start a new conversation.", json_schema_extra=UUID)
]
ChatMessage = Annotated[str, Field(min_length=1, max_length=MAX_CHAT_MESSAGE_CHARS), AfterValidator(plain_text)]
