"""Keep secrets out of text we did not write: upstream error bodies, stream errors, log lines, and every string
the MCP server sends (results, errors, progress, resources)."""

from __future__ import annotations

import functools
import itertools
import re
import string
from collections.abc import Iterable
from typing import Any

from .vendor import API

# Anything shaped like a Lexey/LeadLex key (in any case, glued to other text after an underscore too, its underscore
# percent-encoded or a JSON escape, inside a URL or a JSON text), and any bearer credential, even ones we were never
# given.
_KEY_NAMES = "|".join(re.escape(facts.key_prefix.removesuffix("_")) for facts in API.values())  # lxc, lxm, wbk
_KEY_SHAPES = re.compile(
    rf"(?i)(?:(?<![A-Za-z0-9])|(?<=%[0-9a-f]{{2}})|(?<=\\[nrt]))({_KEY_NAMES})(?:_|%5f|\\u005f)[A-Za-z0-9_\-]+"
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")
REDACTED = "[redacted]"
#: How much longer than itself a secret can appear in text (each character spelled as a 6-character JSON escape).
SPELLING_FACTOR = 6


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret (in any case) and every key-shaped or bearer token replaced."""
    # A pattern runs only where the letters every match begins with occur (plain `in` on the lowered text): most
    # text holds none, and the patterns' lookbehinds make them scan slowly (~250 µs for a 4,000-character
    # progress message, sent twice a second per call).
    low = text.lower()
    for secret in secrets:
        if secret and _literal_start(secret) in low:
            text = _spellings(secret).sub(REDACTED, text)
    if "lxc" in low or "lxm" in low or "wbk" in low:
        text = _KEY_SHAPES.sub(lambda m: f"{m.group(1)}_{REDACTED}", text)
    if "bearer" in low:
        text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return text


# ASCII letters and digits whose every case-insensitive match (re.IGNORECASE) lowers to the same letter. Not i and
# s: re also matches U+0130, U+0131 and U+017F for them, which `str.lower` does not turn into i or s. (The key
# prefixes and "bearer" use none of these two; the Kelvin sign, which re matches for k, lowers to k.)
_LOWER_EXACT = frozenset(string.ascii_letters + string.digits) - set("iIsS")


@functools.lru_cache(maxsize=256)
def _literal_start(secret: str) -> str:
    """The lowered letters any spelling of `secret` starts with (empty when its first character is not one)."""
    return "".join(itertools.takewhile(_LOWER_EXACT.__contains__, secret)).lower()


def _spelled(char: str) -> str:
    if char.isalnum():
        return re.escape(char)
    return f"(?:{re.escape(char)}|%{ord(char):02x}|\\\\u{ord(char):04x})"


@functools.lru_cache(maxsize=256)
def _spellings(secret: str) -> re.Pattern[str]:
    """`secret` in any case, each of its other characters as is, percent-encoded (a URL) or a JSON escape."""
    return re.compile("".join(_spelled(char) for char in secret), re.IGNORECASE)


def redact_tree(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A JSON-shaped value (dicts, lists, strings, numbers) with every string, keys included, redacted."""
    secrets = list(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact_tree(k, secrets): redact_tree(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if len(value) > 1 and all(isinstance(item, str) for item in value):
            value = _across_pieces(value, secrets)
        return [redact_tree(item, secrets) for item in value]
    return value


def _across_pieces(pieces: list[str] | tuple[str, ...], secrets: list[str]) -> list[str]:
    """Strings that may be one text in pieces (Lexi's `thinking` deltas): a secret or key shape that runs across a
    boundary between pieces has its part in each piece redacted. Matches within one piece are left to `redact`."""
    joined = "".join(pieces)
    patterns = [_spellings(secret) for secret in secrets if secret] + [_KEY_SHAPES]
    spans = [match.span() for pattern in patterns for match in pattern.finditer(joined)]
    starts = [0]
    for piece in pieces:
        starts.append(starts[-1] + len(piece))
    out: list[str] = []
    for piece, start, end in zip(pieces, starts, starts[1:], strict=False):
        crossing = sorted(
            (max(a, start) - start, min(b, end) - start)
            for a, b in spans
            if a < end and b > start and not (start <= a and b <= end)
        )
        merged: list[tuple[int, int]] = []
        for a, b in crossing:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
            else:
                merged.append((a, b))
        for a, b in reversed(merged):
            piece = piece[:a] + REDACTED + piece[b:]
        out.append(piece)
    return out
