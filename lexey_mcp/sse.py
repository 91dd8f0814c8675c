"""An incremental parser for the WHATWG event-stream format: bytes in, events out.

Spec: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Why not `httpx2.EventSource`: it decodes with the response's charset (the spec says UTF-8, always), keeps
a leading BOM (so a first `data:` line is lost), dispatches blocks that have no `data` (`id:`-only,
`event:`-only, `retry:`-only), accepts `retry: +5` and ` 5`, and dispatches an extra event when a stream
ends right after a lone CR. Its byte-level parser is private, so we keep our own, tested rule by rule and
against httpx2's wherever the two should agree.

One deliberate difference from a browser: `Event.id` is the id given in *this* block (None when it has
none) rather than the inherited "last event ID", because we check every event's id for gaps.
"""

from __future__ import annotations

from typing import NamedTuple

BOM = b"\xef\xbb\xbf"
_MAX_RETRY_DIGITS = 18


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
        self._data: list[bytes] = []
        self._type = b""
        self._id: bytes | None = None
        self._size = 0  # bytes held for the event being built
        self._oversized = False

    @property
    def has_partial_event(self) -> bool:
        """True when bytes of an event have arrived but not the blank line that dispatches it."""
        return bool(self._line or self._line_dropped or self._data or self._type or self._id is not None)

    def feed(self, chunk: bytes) -> list[Event]:
        if not self._started:
            chunk = self._head + chunk
            if len(chunk) < len(BOM) and BOM.startswith(chunk):
                self._head = chunk
                return []
            self._started, self._head = True, b""
            # The UTF-8 decode algorithm strips one leading BOM, and only one.
            if chunk.startswith(BOM):
                chunk = chunk[len(BOM) :]
        if self._skip_lf:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if not chunk:
            return []
        if b"\r" in chunk:
            # Lines end with CRLF, LF or CR. A CR at the end of a chunk ends its line now; remember it, so that
            # an LF opening the next chunk is not taken for an empty line (which would dispatch an event).
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        tail = lines.pop()
        events: list[Event] = []
        if lines:
            if self._line or self._line_dropped:
                first = lines[0]
                if self._line_dropped:
                    # The rest of a line whose start was dropped for size: ignore it, but it is not empty.
                    lines[0] = b":"
                else:
                    self._line.append(first)
                    lines[0] = b"".join(self._line)
                self._line, self._line_size, self._line_dropped = [], 0, False
            for line in lines:
                event = self._process(line)
                if event is not None:
                    events.append(event)
        if tail:
            self._hold(tail)
        return events

    def _hold(self, part: bytes) -> None:
        if self._line_dropped:
            return
        self._line.append(part)
        self._line_size += len(part)
        if self._size + self._line_size > self.max_event_bytes:
            self._line, self._line_size, self._line_dropped = [], 0, True
            self._overflow()

    def _overflow(self) -> None:
        self._oversized = True
        self._data = []
        self._size = 0

    def _process(self, line: bytes) -> Event | None:
        if not line:
            return self._dispatch()
        # A line starting with a colon is a comment (keep-alives are comments).
        if line[0] == 0x3A:
            return None
        field, colon, value = line.partition(b":")
        # A single space after the colon is not part of the value; any further spaces are.
        if colon and value[:1] == b" ":
            value = value[1:]
        # Field names are case-sensitive; unknown fields are ignored.
        if field == b"data":
            if not self._oversized:
                self._size += len(value) + 1
                if self._size > self.max_event_bytes:
                    self._overflow()
                else:
                    self._data.append(value)
        elif field == b"event":
            self._type = value
        elif field == b"id":
            # An id containing NUL is ignored entirely.
            if b"\0" not in value:
                self._id = value
        # Only a retry value made of ASCII digits alone counts.
        elif field == b"retry" and value.isdigit() and len(value) <= _MAX_RETRY_DIGITS:
            self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        event: Event | None = None
        event_id = None if self._id is None else self._id.decode("utf-8", "replace")
        event_type = self._type.decode("utf-8", "replace") if self._type else "message"
        if self._oversized:
            event = Event(event_type, "", event_id, True)
        elif self._data:
            # An empty data buffer means no event at all (a block of `id:`, `event:` or `retry:` alone).
            event = Event(event_type, b"\n".join(self._data).decode("utf-8", "replace"), event_id)
        self._data, self._type, self._id, self._size, self._oversized = [], b"", None, 0, False
        return event
