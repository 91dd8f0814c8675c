"""Server-Sent Events encoding: frames to bytes, line endings, comments, and write splitting."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

Chunking = Literal["event", "split", "byte"]
LineEnding = Literal["lf", "crlf", "cr"]

DONE = "[DONE]"
BOM = "\ufeff".encode()
EOLS: dict[LineEnding, str] = {"lf": "\n", "crlf": "\r\n", "cr": "\r"}
_COMMENT = ": keep-alive"
_WORDS = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class Frame:
    """One SSE event before encoding."""

    data: str
    event: str | None = None
    id: int | None = None


def dumps(payload: object) -> str:
    """Compact JSON with UTF-8 left as is, like the vendor's examples."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def words(text: str) -> list[str]:
    """Split a reply into stream deltas: each word with its following whitespace."""
    return _WORDS.findall(text)


def encode_frame(frame: Frame, *, line_ending: LineEnding = "lf", comments: bool = False) -> bytes:
    """Encode one event; with `comments`, keep-alive comment lines and an extra blank line are interleaved."""
    fields: list[str] = []
    if frame.id is not None:
        fields.append(f"id: {frame.id}")
    if frame.event is not None:
        fields.append(f"event: {frame.event}")
    fields.extend(f"data: {line}" for line in frame.data.split("\n"))
    if comments:
        # A comment between fields is legal SSE and trips parsers that expect `id:` right before `data:`.
        fields = [_COMMENT, fields[0], *([_COMMENT] if len(fields) > 1 else []), *fields[1:]]
    eol = EOLS[line_ending]
    text = eol.join(fields) + eol + eol
    if comments:
        text += eol
    return text.encode()


def split_point(payload: bytes) -> int:
    """A mid point for a two-way split, moved inside a multibyte UTF-8 sequence when there is one."""
    middle = len(payload) // 2
    inside = [i for i in range(1, len(payload)) if 0x80 <= payload[i] <= 0xBF]
    if inside:
        return min(inside, key=lambda i: (abs(i - middle), i))
    return max(1, middle)


def chunk(payload: bytes, chunking: Chunking) -> list[bytes]:
    """The body writes for one encoded event."""
    if chunking == "byte":
        return [payload[i : i + 1] for i in range(len(payload))]
    if chunking == "split" and len(payload) > 1:
        at = split_point(payload)
        return [payload[:at], payload[at:]]
    return [payload]
