"""An incremental parser for the WHATWG event-stream format: bytes in, events out.

Spec: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Why not `httpx2.EventSource`: it decodes with the response's charset (the spec says UTF-8, always), keeps
a leading BOM (so a first `data:` line is lost), dispatches blocks that have no `data` (`id:`-only,
`event:`-only, `retry:`-only), accepts `retry: +5` and ` 5`, and dispatches an extra event when a stream
ends right after a lone CR. Its byte-level parser is private, so we keep our own, tested rule by rule and
against httpx2's wherever the two should agree.

One deliberate difference from a browser: `Event.id` is the id given in *this* block (None when it has
none) rather than the inherited "last event ID", because we check every event's id for gaps.

Speed comes from plain means: a chunk is split into lines once, and the lines are read in one loop.
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
        """The events `chunk` completes, in order."""
        if not self._started or self._skip_lf or b"\r" in chunk:  # else there is nothing to normalize
            chunk = self._normalize(chunk)
        lines = chunk.split(b"\n")
        tail = lines.pop()
        events: list[Event] = []
        if lines:
            if self._line or self._line_dropped:
                # The line that earlier chunks began ends here. Its start was dropped for size: ignore the rest,
                # but it is not an empty line.
                lines[0] = b":" if self._line_dropped else b"".join([*self._line, lines[0]])
                self._line, self._line_size, self._line_dropped = [], 0, False
            self._read(lines, events)
        if tail:
            self._hold(tail)
        return events

    def _read(self, lines: list[bytes], events: list[Event]) -> None:
        """The general parser, one loop over whole lines (the state lives in locals until the end)."""
        data, kind, event_id, size, oversized = self._data, self._type, self._id, self._size, self._oversized
        cap = self.max_event_bytes
        for line in lines:
            if not line:  # a blank line dispatches the event
                if oversized or data:  # no data at all means no event (a block of `id:`, `event:` or `retry:`)
                    events.append(
                        Event(
                            kind.decode("utf-8", "replace") if kind else "message",
                            ""
                            if oversized
                            else (data[0] if len(data) == 1 else b"\n".join(data)).decode("utf-8", "replace"),
                            None if event_id is None else event_id.decode("utf-8", "replace"),
                            oversized,
                        )
                    )
                    data = []
                kind, event_id, size, oversized = b"", None, 0, False
                continue
            if line[0] == 0x3A:  # a line starting with a colon is a comment (keep-alives are comments)
                continue
            field, _, value = line.partition(b":")
            # A single space after the colon is not part of the value; any further spaces are.
            if value[:1] == b" ":
                value = value[1:]
            # Field names are case-sensitive; unknown fields are ignored.
            if field == b"data":
                if not oversized:
                    size += len(value) + 1
                    if size > cap:
                        oversized, data, size = True, [], 0
                    else:
                        data.append(value)
            elif field == b"event":
                kind = value
            elif field == b"id":
                if b"\0" not in value:  # an id containing NUL is ignored entirely
                    event_id = value
            # Only a retry value made of ASCII digits alone counts.
            elif field == b"retry" and value.isdigit() and len(value) <= _MAX_RETRY_DIGITS:
                self.retry = int(value)
        self._data, self._type, self._id, self._size, self._oversized = data, kind, event_id, size, oversized

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
        """Keep the start of a line whose end has not arrived, within the cap."""
        if self._line_dropped:
            return
        self._line.append(part)
        self._line_size += len(part)
        if self._size + self._line_size > self.max_event_bytes:
            self._line, self._line_size, self._line_dropped = [], 0, True
            self._oversized, self._data, self._size = True, [], 0
