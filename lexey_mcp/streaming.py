"""Fold the events of one reply stream into a result: text, statuses, ids and gaps, errors, ignored events.

`ChatFold` reads the Lexey chat APIs (`data: {"type": "delta" | "status" | "error", …}`), `LexiFold` reads
Lexi's named events (`thinking`, `tool_step`, `text`, `done`, `error`). Both end at `data: [DONE]` and
ignore anything after it. Events that cannot be used (malformed JSON, wrong shapes, oversized) are
skipped and counted; events of kinds a fold does not know are ignored and counted, with their names.

Folds are pure: events in, a result out. Reading the bytes and deciding why a stream ended belong to the
transport (`lexey_mcp.client.read_stream`), which hands the ending to `result()`.

Every structure a fold keeps is bounded, whatever the upstream sends: text (and Lexi's reasoning) by
`max_reply_chars`, and the lists by the counts below (what does not fit is counted, not kept).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from .models import ChatResult, LexiResult, Outcome, PartialReason, RateLimit, StreamError, ToolStep
from .redaction import redact
from .sse import Event

DONE = "[DONE]"
MAX_MISSING_IDS_LISTED = 1000
MAX_MISSING_RANGES = 1000  # gaps kept as ranges; ids in further gaps are only counted
MAX_STATUS_EVENTS = 100  # the last ones are kept
MAX_TOOL_STEPS = 200  # the first ones are kept
MAX_THINKING_PARTS = 200  # the first ones are kept
MAX_IGNORED_TYPES = 10  # distinct names of ignored event kinds listed
MAX_FIELD_CHARS = 200  # a status, an id, an event name
_MAX_ID_DIGITS = 18
_MAX_ERROR_CHARS = 500
_COMPACT_PARTS = 512  # text pieces joined into one, so many tiny deltas do not cost an object each


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


# Built once: `json.loads` with a keyword argument builds a new decoder for every call.
_JSON = json.JSONDecoder(parse_constant=_reject_constant)
# The C scanner alone: decode() wraps it in two regex matches for surrounding whitespace.
_SCAN: Callable[[str, int], tuple[Any, int]] = _JSON.scan_once  # type: ignore[attr-defined]


def load_object(data: str) -> dict[str, Any] | None:
    """The JSON object in `data`, or None for anything else (invalid, NaN, too deep, not an object)."""
    try:
        try:
            value, end = _SCAN(data, 0)
        except StopIteration:  # nothing at index 0 (leading whitespace, or not JSON): the full rules decide
            end = -1
        if end != len(data):  # whitespace around the value, or more after it: the full rules decide
            # Same as json.loads for a str, which also refuses a leading U+FEFF; decode() refuses it as a bad value.
            value = _JSON.decode(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class IdTracker:
    """The highest event id seen, and the ids never seen below it (kept as ranges: a gap may be huge)."""

    def __init__(self) -> None:
        self._high = 0  # the highest id seen (0: none yet; an id of 0 is never the highest, as ids start at 1)
        self._next = "1"  # the id that would follow the highest, as the upstream writes it
        self._starts: list[int] = []  # sorted, disjoint, inclusive ranges of missing ids
        self._ends: list[int] = []
        self._uncounted = 0  # missing ids in gaps past MAX_MISSING_RANGES: counted, not kept

    @property
    def highest(self) -> int | None:
        return self._high or None

    def see(self, raw: str | None) -> None:
        if raw == self._next:  # the usual case: one above the highest (so no need to parse it)
            self._high = n = self._high + 1
            self._next = str(n + 1)
            return
        # Ids that are not plain integers are counted as events but take no part in gap checks.
        if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_ID_DIGITS:
            return
        n = int(raw)
        previous = self._high
        if n > previous:
            self._next = str(n + 1)
            if n > previous + 1:  # ids start at 1
                self._gap(previous + 1, n - 1)
            self._high = n
            return
        # A repeat or a late arrival: a late one fills its gap.
        i = bisect.bisect_right(self._starts, n) - 1
        if i < 0 or n > self._ends[i]:
            return
        start, end = self._starts[i], self._ends[i]
        if start < n < end and len(self._starts) >= MAX_MISSING_RANGES:
            # Splitting would make one range too many: the part above n is counted instead of kept.
            self._uncounted += end - n
            end = n
        pieces = [(s, e) for s, e in ((start, n - 1), (n + 1, end)) if s <= e]
        self._starts[i : i + 1] = [s for s, _ in pieces]
        self._ends[i : i + 1] = [e for _, e in pieces]

    def _gap(self, start: int, end: int) -> None:
        if len(self._starts) < MAX_MISSING_RANGES:
            self._starts.append(start)
            self._ends.append(end)
        else:
            self._uncounted += end - start + 1

    @property
    def missing_count(self) -> int:
        return self._uncounted + sum(e - s + 1 for s, e in zip(self._starts, self._ends, strict=True))

    def missing(self, limit: int = MAX_MISSING_IDS_LISTED) -> list[int]:
        out: list[int] = []
        for s, e in zip(self._starts, self._ends, strict=True):
            out.extend(range(s, min(e, s + limit - len(out) - 1) + 1))
            if len(out) >= limit:
                break
        return out


class Fold:
    """What both APIs share: text with a cap, ids, counts, the end marker, the first error, ignored kinds."""

    def __init__(
        self, *, conversation_id: str | None, request_id: str | None, max_reply_chars: int, secrets: list[str]
    ) -> None:
        self.conversation_id = conversation_id
        self.request_id = request_id
        self.max_reply_chars = max_reply_chars
        self.secrets = secrets
        self.done = False
        self.too_large = False
        self.error: StreamError | None = None
        self.events_received = 0
        self.skipped_events = 0
        self.ignored_events = 0
        self.ignored_event_types: list[str] = []
        self.ids = IdTracker()
        self._parts: list[str] = []  # the text so far, in pieces
        self._joined = 0  # how many of the first pieces are joins of earlier ones (the rest are fresh deltas)
        self._chars = 0  # text and reasoning held, against the cap
        self.text_version = 0  # bumps whenever text grows, so progress can tell

    def begin(self, request_id: str | None, rate_limit: RateLimit | None) -> None:
        """What the response's headers say, before its first event."""
        self.request_id = request_id

    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts, self._joined = ["".join(self._parts)], 1
        return self._parts[0] if self._parts else ""

    def feed(self, events: Iterable[Event]) -> None:
        """Fold `events`, in order, up to `[DONE]` or the reply cap: nothing after either counts."""
        if self.done or self.too_large:
            return
        see, handle = self.ids.see, self._handle
        received = skipped = 0  # counted in locals, stored once per batch
        for kind, data, event_id, oversized in events:
            if event_id is not None:
                see(event_id)
            if data == DONE and kind == "message":
                self.done = True
                break
            received += 1
            if oversized or not handle(kind, data):
                skipped += 1
            if self.too_large:
                break
        self.events_received += received
        self.skipped_events += skipped
        if len(self._parts) - self._joined >= _COMPACT_PARTS:
            # Join the newest pieces into one (only those: every character is copied here once, and once more by
            # text(), so building the text stays linear). Once per batch, so a piece costs no bookkeeping.
            self._parts[self._joined :] = ["".join(self._parts[self._joined :])]
            self._joined += 1

    def _handle(self, kind: str, data: str) -> bool:
        """Apply one event (its type and data); False when it could not be used."""
        raise NotImplementedError

    def _ignore(self, kind: object) -> bool:
        """Count an event of a kind this fold does not know (a vendor change would look like silence)."""
        self.ignored_events += 1
        if isinstance(kind, str) and len(self.ignored_event_types) < MAX_IGNORED_TYPES:
            name = redact(kind[:MAX_FIELD_CHARS], self.secrets)
            if name not in self.ignored_event_types:
                self.ignored_event_types.append(name)
        return True

    def _take(self, chars: int) -> int:
        """How many of `chars` new characters fit under the cap (flags the fold too large when not all)."""
        room = self.max_reply_chars - self._chars
        if chars > room:
            self.too_large = True
            chars = max(room, 0)
        self._chars += chars
        return chars

    def _append_text(self, delta: str) -> None:
        size = len(delta)
        if self._chars + size > self.max_reply_chars:
            delta = delta[: self._take(size)]
        else:
            self._chars += size
        if delta:
            self._parts.append(delta)
            self.text_version += 1

    def _set_error(self, message: object, code: object) -> None:
        """Keep the first in-stream error, redacted and bounded; a message that is not text becomes a generic one."""
        if self.error is None:
            text = redact(message if isinstance(message, str) else "upstream error", self.secrets)
            if len(text) > _MAX_ERROR_CHARS:
                text = text[:_MAX_ERROR_CHARS] + "…"
            short_code = redact(code, self.secrets)[:100] if isinstance(code, str) and code else None
            self.error = StreamError(message=text, code=short_code)

    def outcome(self, ending: PartialReason | None) -> Outcome:
        """`ending` is why the stream ended early (None: it reached [DONE])."""
        return "error" if self.error is not None else ("complete" if ending is None else "partial")

    def _common(self, ending: PartialReason | None) -> dict[str, Any]:
        """The fields both results share. `ending` is why the stream ended early (None: it reached [DONE])."""
        outcome = self.outcome(ending)
        return {
            "text": self.text(),
            "conversation_id": self.conversation_id,
            "outcome": outcome,
            "partial_reason": ending,
            "error": self.error,
            "events_received": self.events_received,
            "skipped_events": self.skipped_events,
            "ignored_events": self.ignored_events,
            "ignored_event_types": self.ignored_event_types,
            "last_event_id": self.ids.highest,
            "missing_event_ids": self.ids.missing(),
            "missing_event_count": self.ids.missing_count,
            "request_id": self.request_id,
        }


class ChatFold(Fold):
    """The Lexey customer and management streams."""

    def __init__(
        self, *, conversation_id: str | None, request_id: str | None, max_reply_chars: int, secrets: list[str]
    ) -> None:
        super().__init__(
            conversation_id=conversation_id, request_id=request_id, max_reply_chars=max_reply_chars, secrets=secrets
        )
        self.status_events: list[str] = []
        self.status_events_omitted = 0

    def _handle(self, kind: str, data: str) -> bool:
        if kind != "message":
            return self._ignore(kind)  # a named event the chat APIs do not define
        obj = load_object(data)
        if obj is None:
            return False
        match obj.get("type"):
            case "delta":
                text = obj.get("text")
                if not isinstance(text, str):
                    return False
                self._append_text(text)
            case "status":
                status = obj.get("status")
                if not isinstance(status, str):
                    return False
                if len(self.status_events) == MAX_STATUS_EVENTS:
                    del self.status_events[0]  # the last ones matter: the newest is the conversation's status
                    self.status_events_omitted += 1
                self.status_events.append(redact(status[:MAX_FIELD_CHARS], self.secrets))
            case "error":
                self._set_error(obj.get("message"), obj.get("code"))
            case other:
                return self._ignore(other)
        return True

    def result(self, ending: PartialReason | None) -> ChatResult:
        return ChatResult(
            **self._common(ending),
            conversation_status=self.status_events[-1] if self.status_events else None,
            status_events=self.status_events,
            status_events_omitted=self.status_events_omitted,
        )


class LexiFold(Fold):
    """Lexi's named-event stream."""

    def __init__(
        self,
        *,
        conversation_id: str | None,
        max_reply_chars: int,
        secrets: list[str],
        idempotency_key: str | None,
        request_id: str | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        super().__init__(
            conversation_id=conversation_id, request_id=request_id, max_reply_chars=max_reply_chars, secrets=secrets
        )
        self.idempotency_key = idempotency_key
        self.rate_limit = rate_limit
        self.thinking: list[str] = []
        self.thinking_omitted = 0
        self.tool_steps: list[ToolStep] = []
        self.tool_steps_omitted = 0
        self.message_id: str | None = None
        self.credits_remaining: int | None = None

    def begin(self, request_id: str | None, rate_limit: RateLimit | None) -> None:
        super().begin(request_id, rate_limit)
        self.rate_limit = rate_limit

    def _handle(self, kind: str, data: str) -> bool:
        if kind == "error":
            obj = load_object(data)
            if obj is None:  # not JSON: keep the raw text as the message
                self._set_error(data or "upstream error", None)
                return True
            inner = obj.get("error")
            source = inner if isinstance(inner, dict) else obj
            self._set_error(source.get("message"), source.get("code"))
            return True
        if kind not in ("text", "thinking", "tool_step", "done"):
            return self._ignore(kind)  # unknown event names (and plain `message` events other than [DONE])
        obj = load_object(data)
        if obj is None:
            return False
        match kind:
            case "text":
                delta = obj.get("delta")
                if not isinstance(delta, str):
                    return False
                cid = obj.get("conversation_id")
                if self.conversation_id is None and isinstance(cid, str) and cid:
                    self.conversation_id = redact(cid[:MAX_FIELD_CHARS], self.secrets)
                self._append_text(delta)
            case "thinking":
                text = obj.get("text")
                if not isinstance(text, str):
                    return False
                if len(self.thinking) == MAX_THINKING_PARTS:
                    self.thinking_omitted += 1
                elif fit := self._take(len(text)):
                    self.thinking.append(text[:fit])
            case "tool_step":
                tool, status, summary = obj.get("tool"), obj.get("status"), obj.get("summary")
                if not isinstance(tool, str) or not isinstance(status, str):
                    return False
                summary = summary if isinstance(summary, str) else None
                if len(self.tool_steps) == MAX_TOOL_STEPS:
                    self.tool_steps_omitted += 1
                elif self._take(len(tool) + len(status) + len(summary or "")):
                    self.tool_steps.append(ToolStep(tool=tool, status=status, summary=summary))
            case _:  # done
                credits, message_id = obj.get("credits_remaining"), obj.get("message_id")
                if isinstance(credits, int | float) and not isinstance(credits, bool) and math.isfinite(credits):
                    self.credits_remaining = int(credits)
                if isinstance(message_id, str):
                    self.message_id = redact(message_id[:MAX_FIELD_CHARS], self.secrets)
        return True

    def result(self, ending: PartialReason | None) -> LexiResult:
        return LexiResult(
            **self._common(ending),
            message_id=self.message_id,
            credits_remaining=self.credits_remaining,
            tool_steps=self.tool_steps,
            tool_steps_omitted=self.tool_steps_omitted,
            thinking=self.thinking,
            thinking_omitted=self.thinking_omitted,
            rate_limit=self.rate_limit,
            idempotency_key=self.idempotency_key,
        )
