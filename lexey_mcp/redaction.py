"""Keep secrets out of text we did not write: upstream error bodies, stream errors, log lines, and every string
the MCP server sends (results, errors, progress, resources)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# Anything shaped like a Lexey/LeadLex key (in any case, glued to other text after an underscore too), and any
# bearer credential, even ones we were never given.
_KEY_SHAPES = re.compile(r"(?i)(?<![A-Za-z0-9])(lxc|lxm|wbk)_[A-Za-z0-9_\-]+")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")
REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret (in any case) and every key-shaped or bearer token replaced."""
    for secret in secrets:
        if secret:
            text = re.sub(re.escape(secret), REDACTED, text, flags=re.IGNORECASE)
    text = _KEY_SHAPES.sub(lambda m: f"{m.group(1)}_{REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def redact_tree(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A JSON-shaped value (dicts, lists, strings, numbers) with every string, keys included, redacted."""
    secrets = list(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact_tree(k, secrets): redact_tree(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(item, secrets) for item in value]
    return value
