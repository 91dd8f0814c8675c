"""Checks on caller input, made before any request is sent. Each failure is a `LexeyInputError`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import ConfigDict, Field

from .errors import LexeyInputError
from .models import Schema

#: A canonical, hyphenated UUID (what the APIs mint); anything else never reaches a URL path.
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(UUID_PATTERN.strip("^$"))
LEXI_MAX_MESSAGE_CHARS = 12_000
_MAX_CONTEXT_VALUE_CHARS = 500


# Optional: a model reads it as a bounded string (`arguments.compact_schema` drops the `null` branch).
ContextValue = Annotated[str | None, Field(min_length=1, max_length=_MAX_CONTEXT_VALUE_CHARS)]


class LexiContext(Schema):
    """The page or CRM record the question is about."""

    model_config = ConfigDict(extra="forbid")

    contact_id: ContextValue = None
    deal_id: ContextValue = None
    matter_id: ContextValue = None
    company_id: ContextValue = None
    page: ContextValue = None


LEXI_CONTEXT_KEYS = frozenset(LexiContext.model_fields)
# C0 controls other than tab, LF and CR; DEL; C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_uuid(value: str, name: str = "conversation_id") -> str:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise LexeyInputError(f"{name} must be a UUID like 550e8400-e29b-41d4-a716-446655440000.")
    return value


def _check_text(value: str, name: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise LexeyInputError(f"{name} contains a lone surrogate, which is not valid Unicode text.") from None
    if _CONTROL.search(value):
        raise LexeyInputError(f"{name} contains control characters; remove them.")


def check_message(value: str, *, max_chars: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LexeyInputError("message must not be empty.")
    if max_chars is not None and len(value) > max_chars:
        raise LexeyInputError(f"message is {len(value):,} characters; the limit is {max_chars:,}.")
    _check_text(value, "message")
    return value


def check_context(context: Mapping[str, object] | None) -> dict[str, str] | None:
    """Lexi's page/entity context: only the documented keys, string values."""
    if context is None:
        return None
    unknown = set(context) - LEXI_CONTEXT_KEYS
    if unknown:
        raise LexeyInputError(
            f"context has unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(LEXI_CONTEXT_KEYS))}."
        )
    checked: dict[str, str] = {}
    for key, value in context.items():
        if value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > _MAX_CONTEXT_VALUE_CHARS:
            raise LexeyInputError(f"context.{key} must be a non-empty string of at most 500 characters.")
        _check_text(value, f"context.{key}")
        checked[key] = value
    return checked or None
