"""Keep secrets out of text we did not write: upstream error bodies, stream errors, log lines."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Anything shaped like a Lexey/LeadLex key, and any bearer credential, even ones we were never given.
_KEY_SHAPES = re.compile(r"\b(lxc|lxm|wbk)_[A-Za-z0-9_\-]+")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")
REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret and every key-shaped or bearer token replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _KEY_SHAPES.sub(lambda m: f"{m.group(1)}_{REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
