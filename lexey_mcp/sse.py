"""An incremental parser for the WHATWG event-stream format: bytes in, events out.

Spec: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Why not `httpx2.EventSource`: it decodes with the response's charset (the spec says UTF-8, always), keeps
a leading BOM (so a first `data:` line is lost), dispatches blocks that have no `data` (`id:`-only,
`event:`-only, `retry:`-only), accepts `retry: +5` and ` 5`, and dispatches an extra event when a stream
ends right after a lone CR. Its byte-level parser is private, so we keep our own, tested rule by rule and
against httpx2's wherever the two should agree.

One deliberate difference from a browser: `Event.id` is the id given in *this* block (None when it has
none) rather than the inherited "last event ID", because we check every event's id for gaps.

Speed comes from plain means: a chunk's whole lines are decoded in one go; runs of the usual blocks (`id` and
`event` lines, one `data` line, a blank line) are read by one regular expression, and anything else is split into
lines and read in one loop, rule by rule.
"""

from __future__ import annotations

import re
from typing import NamedTuple

BOM = b"\xef\xbb\xbf"
_MAX_RETRY_DIGITS = 18
_LONGEST_FIELD_PREFIX = len(b"event: ")  # a line this much over the cap has a value of the cap's size or more
# The usual block, whose reading by the rules is plain: `id: ` and `event: ` lines (a repeated field's last value
# wins, as a repeated group keeps its last capture), then one `data: ` line, then a blank line. An empty id, an id
# with NUL, a field without its space, a comment, a second data line, `retry` or anything else is left to the loop.
_BLOCK = r"(?:id: ([^\n\x00]{1,100}+)\n|event: ([^\n]{0,100}+)\n)*+data: ([^\n]{0,500}+)\n\n"
_USUAL = re.compile(_BLOCK)
_USUAL_RUN = re.compile(f"(?:{_BLOCK})*")
_USUAL_MIN_TEXT = 4096  # bytes of whole lines in a chunk...
_USUAL_FIRST_END = 512  # ...the first event ending within this many of them


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class Event(NamedTuple):
    type: str  # the `event` field; "message" when the block has none
    data: str  # `data` lines joined with "\n"
    id: str | None  # this block's own `id` field
    oversized: bool = False  # the block went over the size cap; its data was dropped


class SSEDecoder:
    """Feed it chunks of any size, split anywhere; it returns the events they complete."""

    def __init__(self, max_event_bytes: int = 1024 * 1024) -> None:
        self.max_event_bytes = max_event_bytes
        self.retry: int | None = None
        self._started = False  # past the point where a BOM may stand
        self._head = b""  # the first bytes, held back while they may still be a BOM split across chunks
        self._skip_lf = False  # the last chunk ended with CR: an LF starting the next one is the same line end
        self._line: list[bytes] = []  # the line still waiting for its end
        self._line_size = 0
        self._line_dropped = False  # the waiting line went over the cap and its bytes were dropped
        self._data: list[str] = []
        self._type = ""
        self._id: str | None = None
        self._size = 0  # bytes held for the event being built (less `_slack`: see _read)
        self._slack = 0
        self._oversized = False

    @property
    def has_partial_event(self) -> bool:
        """True when bytes of an event have arrived but not the blank line that dispatches it."""
        return bool(
            self._line or self._line_dropped or self._data or self._type or self._id is not None or self._oversized
        )

    def feed(self, chunk: bytes) -> list[Event]:
        """The events `chunk` completes, in order."""
        if not self._started or self._skip_lf or b"\r" in chunk:  # else there is nothing to normalize
            chunk = self._normalize(chunk)
        end = chunk.rfind(b"\n")
        if end < 0:
            if chunk:
                self._hold(chunk)
            return []
        head, tail = chunk[:end], chunk[end + 1 :]
        if self._line_dropped:
            # The rest of a line whose start was dropped for size: ignore it, but it is not an empty line.
            first = head.find(b"\n")
            head = b":" if first < 0 else b":" + head[first:]
        elif self._line:
            head = b"".join([*self._line, head])  # the line that earlier chunks began ends here
        self._line, self._line_size, self._line_dropped = [], 0, False
        events: list[Event] = []
        # One decode for all the chunk's whole lines: LF is never part of a multi-byte sequence, so this is the
        # text that decoding each line alone would give, undecodable bytes becoming U+FFFD alike.
        text = head.decode("utf-8", "replace")
        # Over a few events, or long ones, the loop is as fast or faster: the expression is for many short ones.
        if len(head) >= _USUAL_MIN_TEXT and head.find(b"\n\n", 0, _USUAL_FIRST_END) >= 0:
            self._read_text(text + "\n", events)
        else:
            self._read(text.split("\n"), events)
        if tail:
            self._hold(tail)
        return events

    def _read_text(self, text: str, events: list[Event]) -> None:
        """Whole lines (`text` ends with LF): the event under way by the loop, then a run of usual blocks by the
        expression, then the rest by the loop."""
        start = 0
        if self.has_partial_event:  # an event under way (no line is held: `feed` took it into `text`)
            if text[0] == "\n":
                blank = 0  # the blank line that ends it opens the text
            else:
                found = text.find("\n\n")
                blank = found + 1 if found >= 0 else len(text) - 1  # its blank line, or else the text's last line
            self._read(text[:blank].split("\n"), events)
            start = blank + 1
        # Only where no event can reach the cap (a character is at most 4 bytes in UTF-8, the cap counts each line's
        # LF): the loop checks sizes, the expression does not.
        if start < len(text) and len(text) - start <= (self.max_event_bytes - 1) // 4:
            run = _USUAL_RUN.match(text, start)  # always a match, if only an empty one
            end = run.end() if run else start
            new_event = tuple.__new__
            events.extend(
                new_event(Event, (kind or "message", data, event_id or None, False))
                for event_id, kind, data in _USUAL.findall(text, start, end)
            )
            start = end
        if start < len(text):
            self._read(text[start:-1].split("\n"), events)

    def _read(self, lines: list[str], events: list[Event]) -> None:
        """The parser proper, one loop over whole lines (the state lives in locals until the end)."""
        data, kind, event_id, oversized = self._data, self._type, self._id, self._oversized
        size, slack = self._size, self._slack
        cap = self.max_event_bytes
        new_event = tuple.__new__
        for line in lines:
            if not line:  # a blank line dispatches the event
                if data:
                    text = data[0] if len(data) == 1 else "\n".join(data)
                    events.append(new_event(Event, (kind or "message", text, event_id, False)))
                    data = []
                elif oversized:  # no data at all is no event (a block of `id:`, `event:` or `retry:` alone)
                    events.append(new_event(Event, (kind or "message", "", event_id, True)))
                kind, event_id, size, slack, oversized = "", None, 0, 0, False
                continue
            field, _, value = line.partition(":")
            if not field:  # a line starting with a colon is a comment (keep-alives are comments)
                continue
            # A single space after the colon is not part of the value; any further spaces are.
            if value[:1] == " ":
                value = value[1:]
            # Field names are case-sensitive; unknown fields are ignored.
            if field == "data":
                if not oversized:
                    # The cap is on UTF-8 bytes. Encoding to count them costs more than the rest of the parse, so
                    # non-ASCII text counts a character each, and `slack` three more: bytes are counted only when
                    # the most they could be is over the cap.
                    size += len(value) + 1
                    if not value.isascii():
                        slack += 3 * len(value)
                    if size + slack > cap:
                        size, slack = sum(_utf8_size(v) + 1 for v in data) + _utf8_size(value) + 1, 0
                        if size > cap:
                            oversized, data, size = True, [], 0
                    if not oversized:
                        data.append(value)
            # An id or event value of the cap's size or more is ignored (as it is when it arrives split: `_hold`).
            elif field == "event":
                if len(value) * 4 < cap or _utf8_size(value) < cap:
                    kind = value
            elif field == "id":
                # An id containing NUL is ignored entirely.
                if "\0" not in value and (len(value) * 4 < cap or _utf8_size(value) < cap):
                    event_id = value
            # Only a retry value made of ASCII digits alone counts.
            elif field == "retry" and value.isascii() and value.isdigit() and len(value) <= _MAX_RETRY_DIGITS:
                self.retry = int(value)
        self._data, self._type, self._id, self._oversized = data, kind, event_id, oversized
        self._size, self._slack = size, slack

    def _normalize(self, chunk: bytes) -> bytes:
        """`chunk` without a leading BOM and with every line end an LF (state carried across chunks)."""
        if not self._started:
            chunk = self._head + chunk
            if len(chunk) < len(BOM) and BOM.startswith(chunk):
                self._head = chunk
                return b""
            self._started, self._head = True, b""
            # The UTF-8 decode algorithm strips one leading BOM, and only one.
            if chunk.startswith(BOM):
                chunk = chunk[len(BOM) :]
        if self._skip_lf:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if b"\r" in chunk:
            # Lines end with CRLF, LF or CR. A CR at the end of a chunk ends its line now; remember it, so that
            # an LF opening the next chunk is not taken for an empty line (which would dispatch an event).
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return chunk

    def _hold(self, part: bytes) -> None:
        """Keep the start of a line whose end has not arrived; drop one so long that the loop's verdict on it is
        already certain (the rest of it is ignored when it comes). Its value is then at least the cap's size: a data
        line makes its event oversized; the loop ignores any other line that long, as it ignores an id or event
        value of the cap's size or more. The verdict is the same wherever the chunks split."""
        if self._line_dropped:
            return
        self._line.append(part)
        self._line_size += len(part)
        if self._line_size >= self.max_event_bytes + _LONGEST_FIELD_PREFIX:
            start = b"".join(self._line)
            self._line, self._line_size, self._line_dropped = [], 0, True
            if start.partition(b":")[0] == b"data":
                self._oversized, self._data, self._size, self._slack = True, [], 0, 0
