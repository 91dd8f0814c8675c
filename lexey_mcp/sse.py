"""An incremental parser for the WHATWG event-stream format: bytes in, events out.

Spec: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Why not `httpx2.EventSource`: it decodes with the response's charset (the spec says UTF-8, always), keeps
a leading BOM (so a first `data:` line is lost), dispatches blocks that have no `data` (`id:`-only,
`event:`-only, `retry:`-only), accepts `retry: +5` and ` 5`, and dispatches an extra event when a stream
ends right after a lone CR. Its byte-level parser is private, so we keep our own, tested rule by rule and
against httpx2's wherever the two should agree.

One deliberate difference from a browser: `Event.id` is the id given in *this* block (None when it has
none) rather than the inherited "last event ID", because we check every event's id for gaps.

Fast path (`feed_iter` with a `FastPath`): the blocks a chunk completes are decoded to text in one go and
offered to a caller's matcher (a fold's regex for its most common event shape) before the general parser
sees them; whatever the matcher does not take, the general parser handles, line by line, as always.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

BOM = b"\xef\xbb\xbf"
_MAX_RETRY_DIGITS = 18


class Event(NamedTuple):
    type: str  # the `event` field; "message" when the block has none
    data: str  # `data` lines joined with "\n"
    id: str | None  # this block's own `id` field
    oversized: bool = False  # the block went over the size cap; its data was dropped


#: `fast(text)` folds the events of `text` it recognises itself, in order, and gives back the text of the
#: blocks between them, in order, for the general parser (lazily, if it folds events after those). `text` is
#: whole blocks from a boundary (nothing pending) with LF line ends and undecodable bytes as lone surrogates
#: (`surrogateescape`), and no block in it is over the size cap. Each piece it gives back must be whole blocks
#: too (one or more, ending with a blank line). It may take only blocks that are events, never one with a
#: `retry` field (that is the decoder's own state).
FastPath = Callable[[str], Iterable[str]]


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
        return list(self.feed_iter(chunk))

    def feed_iter(self, chunk: bytes, fast: FastPath | None = None) -> Iterator[Event]:
        """The events `chunk` completes, in order, but for those `fast` folds itself. Lazy: what `fast` folds,
        it folds as the iteration reaches it, so a consumer that stops early stops it too."""
        if not self._started or self._skip_lf or b"\r" in chunk:  # else there is nothing to normalize
            chunk = self._normalize(chunk)
        pos = 0
        if fast is not None:
            # The matcher gets the whole blocks in this chunk: from its first block boundary to its last. The
            # first is the chunk's start when nothing is pending; else the end of its first blank line, which
            # finishes what earlier chunks began (the general parser takes that part, and is idle after it).
            first = 0 if self._idle else chunk.find(b"\n\n") + 2  # 1: there is none
            last = chunk.rfind(b"\n\n") + 2  # 1: there is none
            if last > max(first, 1):
                if first:
                    yield from self._lines(chunk[:first])
                pos = first
                while pos < last:
                    # At most max_event_bytes at a time: no event the matcher sees can be over the cap then (a
                    # `data` value and its LF fit in the window). The window ends at its last block boundary.
                    end = last
                    if last - pos > self.max_event_bytes:
                        end = chunk.rfind(b"\n\n", pos, pos + self.max_event_bytes) + 2
                    if end < 2:  # no boundary: the next block alone is longer, the general parser takes it
                        end = chunk.index(b"\n\n", pos) + 2
                        yield from self._lines(chunk[pos:end])
                    else:
                        # One decode for many events. Splitting at LF cannot split a character (LF is never in a
                        # multi-byte sequence), so this gives the same text as decoding each field alone; and
                        # surrogateescape turns undecodable bytes into lone surrogates, which the matcher leaves,
                        # and back into the same bytes for the general parser.
                        for rest in fast(chunk[pos:end].decode("utf-8", "surrogateescape")):
                            yield from self._lines(rest.encode("utf-8", "surrogateescape"))
                    pos = end
        if pos < len(chunk):
            yield from self._lines(chunk[pos:])

    @property
    def _idle(self) -> bool:
        """At a line start with no field of an event pending: a block may start here."""
        return not (
            self._line or self._line_dropped or self._data or self._type or self._id is not None or self._oversized
        )

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

    def _lines(self, chunk: bytes) -> list[Event]:
        """The general parser: the events completed by `chunk` (LF line ends only), line by line."""
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
