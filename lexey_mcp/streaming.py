"""Fold one SSE response into a result: text, statuses, ids and gaps, errors, partial endings.

`ChatFold` reads the Lexey chat APIs (`data: {"type": "delta" | "status" | "error", …}`), `LexiFold` reads
Lexi's named events (`thinking`, `tool_step`, `text`, `done`, `error`). Both end at `data: [DONE]` and
ignore anything after it. Events that cannot be used (malformed JSON, wrong shapes, oversized) are
skipped and counted; unknown event types are ignored. `read_stream` drives a fold from an httpx2
response and turns a dropped, stalled or oversized stream into a `partial` result with the text so far.

Fast path: each fold names the one event shape that makes up almost all of its streams (a chat `delta`, a
Lexi `text`) as a regex over the decoded blocks, and takes whole runs of such events in one step (see
`SSEDecoder.feed_iter`). A match there is, by construction, an event the general path would fold the same
way; anything else (other events, other key orders, `\\u` escapes, odd ids, undecodable bytes) goes through
the general path, one `Event` at a time.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from functools import cache, partial
from itertools import compress
from typing import Any, cast

import anyio
import httpx2

from .models import ChatResult, LexiResult, Outcome, PartialReason, RateLimit, StreamError, ToolStep
from .redaction import redact
from .sse import Event, FastPath, SSEDecoder

OnText = Callable[[str], Awaitable[None]]

DONE = "[DONE]"
MAX_MISSING_IDS_LISTED = 1000
_MAX_ID_DIGITS = 18
_MAX_ERROR_CHARS = 500
_COMPACT_PARTS = 512  # text pieces joined into one, so many tiny deltas do not cost an object each


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


# Built once: `json.loads` with a keyword argument builds a new decoder for every call.
_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def load_object(data: str) -> dict[str, Any] | None:
    """The JSON object in `data`, or None for anything else (invalid, NaN, too deep, not an object)."""
    try:
        # Same as json.loads for a str, which also refuses a leading U+FEFF; decode() refuses it as a bad value.
        value = _JSON.decode(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# The characters a JSON string holds unescaped, less lone surrogates: those stand for bytes that are not UTF-8
# (see SSEDecoder.feed_iter), which the general path turns into U+FFFD. Ranges: the fastest class for `re`.
_PLAIN = r"[\x5d-\ud7ff\x23-\x5b\x20\x21\ue000-\U0010ffff]"
# A JSON string's body whose escapes are all one-character ones. No \u: an escaped surrogate could pair up
# with one in the next event's string once the bodies of a run are joined.
_BODY = rf'{_PLAIN}*+(?:\\["\\/bfnrt]{_PLAIN}*+)*+'
# Where a block may start: the start of the text the decoder hands over, or right after a blank line.
_BOUNDARY = r"(?:\A|(?<=\n\n))"
# An optional `id:` line holding a plain integer, as IdTracker counts it (one optional space after the colon).
_ID = r"(?:id: ?([0-9]{1,18})\n)?"


def _unescape(body: str) -> str:
    """A JSON string's text from between its quotes (`body` has only one-character escapes)."""
    text = json.loads(f'"{body}"')
    assert isinstance(text, str)
    return text


def _split(pattern: re.Pattern[str], text: str, take: Callable[[list[Any]], None]) -> Iterable[str]:
    """Fold every run of back-to-back `pattern` events in `text` with `take`; return the blocks between the runs,
    in order, for the general parser. `pattern` must start at a block boundary."""
    # gap, group 1, group 2, …, gap, …: a gap before each event, one after the last. `take` gets a slice of it
    # for each run and reads only the groups, with a stride: parts[1::step], parts[2::step], …
    parts = pattern.split(text)
    if len(parts) == 1:  # no event of the pattern
        return parts
    gaps = parts[:: pattern.groups + 1]
    if not any(gaps):  # all of them: one run, the usual case
        take(parts)
        return ()
    return _interleave(parts, gaps, pattern.groups + 1, take)


def _interleave(parts: list[Any], gaps: list[str], step: int, take: Callable[[list[Any]], None]) -> Iterator[str]:
    """Runs and gaps in turn, lazily: a run after a gap is taken only once the gap's events have been folded."""
    start = 0
    for i in compress(range(len(gaps)), gaps):  # the gaps that are not empty
        if i > start:
            take(parts[start * step : i * step])
        yield gaps[i]
        start = i
    if start < len(gaps) - 1:
        take(parts[start * step :])


class IdTracker:
    """The highest event id seen, and the ids never seen below it (kept as ranges: a gap may be huge)."""

    def __init__(self) -> None:
        self.highest: int | None = None
        self._starts: list[int] = []  # sorted, disjoint, inclusive ranges of missing ids
        self._ends: list[int] = []

    def see(self, raw: str | None) -> None:
        # Ids that are not plain integers are counted as events but take no part in gap checks.
        if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_ID_DIGITS:
            return
        n = int(raw)
        previous = 0 if self.highest is None else self.highest
        if n > previous:
            if n > previous + 1:  # ids start at 1
                self._starts.append(previous + 1)
                self._ends.append(n - 1)
            self.highest = n
            return
        # A repeat or a late arrival: a late one fills its gap.
        i = bisect.bisect_right(self._starts, n) - 1
        if i < 0 or n > self._ends[i]:
            return
        pieces = [(s, e) for s, e in ((self._starts[i], n - 1), (n + 1, self._ends[i])) if s <= e]
        self._starts[i : i + 1] = [s for s, _ in pieces]
        self._ends[i : i + 1] = [e for _, e in pieces]

    def see_run(self, raws: Sequence[str | None]) -> None:
        """`see` each of `raws` (plain integers, or None)."""
        # The usual case in one step: every event has an id, counting up by one from above the highest.
        if len(raws) > 1 and all(raws):
            numbers = [*map(int, cast("Sequence[str]", raws))]  # all() ruled out None
            first, last = numbers[0], numbers[-1]
            if first > (self.highest or 0) and numbers == [*range(first, last + 1)]:
                self.see(raws[0])  # records the gap before it, if any
                self.highest = last
                return
        for raw in raws:
            self.see(raw)

    @property
    def missing_count(self) -> int:
        return sum(e - s + 1 for s, e in zip(self._starts, self._ends, strict=True))

    def missing(self, limit: int = MAX_MISSING_IDS_LISTED) -> list[int]:
        out: list[int] = []
        for s, e in zip(self._starts, self._ends, strict=True):
            out.extend(range(s, min(e, s + limit - len(out) - 1) + 1))
            if len(out) >= limit:
                break
        return out


class _Fold:
    """What both APIs share: text accumulation with a cap, ids, counts, the end marker."""

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
        self.ids = IdTracker()
        self._parts: list[str] = []  # the text so far, in pieces
        self._fresh = 0  # how many of the last pieces have not been joined yet
        self._chars = 0  # text and reasoning held, against the cap
        self.text_version = 0  # bumps whenever text grows, so progress can tell

    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts, self._fresh = ["".join(self._parts)], 0
        return self._parts[0] if self._parts else ""

    def fast_path(self) -> FastPath | None:
        """The matcher `read_stream` hands the decoder, if this fold has one."""
        return None

    def _take(self, chars: int) -> int:
        """How many of `chars` new characters fit under the cap (flags the fold too large when not all)."""
        room = self.max_reply_chars - self._chars
        if chars > room:
            self.too_large = True
            chars = max(room, 0)
        self._chars += chars
        return chars

    def _append_text(self, delta: str) -> None:
        fit = self._take(len(delta))
        if fit:
            self._parts.append(delta if fit == len(delta) else delta[:fit])
            self.text_version += 1
            self._fresh += 1
            if self._fresh == _COMPACT_PARTS:
                # Join the newest pieces into one (only those: every character is copied here once, and once
                # more by text(), so building the text stays linear).
                self._parts[-_COMPACT_PARTS:] = ["".join(self._parts[-_COMPACT_PARTS:])]
                self._fresh = 0

    def _set_error(self, message: object, code: object) -> None:
        """Keep the first in-stream error, redacted and bounded; a message that is not text becomes a generic one."""
        if self.error is None:
            text = redact(message if isinstance(message, str) else "upstream error", self.secrets)
            if len(text) > _MAX_ERROR_CHARS:
                text = text[:_MAX_ERROR_CHARS] + "…"
            short_code = redact(code, self.secrets)[:100] if isinstance(code, str) and code else None
            self.error = StreamError(message=text, code=short_code)

    def _take_run(self, ids: list[Any], deltas: list[str]) -> None:
        """Fold a run of back-to-back text events that a fast path matched (see _split)."""
        self.ids.see_run(ids)
        self.events_received += len(deltas)
        # Joining before unescaping is safe: no escape spans two bodies and none is \u (see _BODY). The cap
        # cuts the joined text where it would have cut the deltas one by one.
        text = "".join(deltas)
        self._append_text(_unescape(text) if "\\" in text else text)

    def feed(self, event: Event) -> None:
        if self.done:
            return  # nothing after [DONE] counts
        self.ids.see(event.id)
        if event.data == DONE and event.type == "message":
            self.done = True
            return
        self.events_received += 1
        if event.oversized or not self._handle(event):
            self.skipped_events += 1

    def _handle(self, event: Event) -> bool:
        """Apply one event; False when it could not be used."""
        raise NotImplementedError

    def ending(self, partial_reason: PartialReason | None) -> tuple[Outcome, PartialReason | None]:
        """The outcome and why the reply ended early (None: it did not), given why `read_stream` stopped."""
        if self.too_large:
            partial_reason = "reply_too_large"  # the text was cut, whether [DONE] came after or not
        elif self.done:
            partial_reason = None
        elif partial_reason is None:
            partial_reason = "ended_without_done"
        outcome: Outcome = "error" if self.error is not None else ("complete" if partial_reason is None else "partial")
        return outcome, partial_reason

    def _common(self, partial_reason: PartialReason | None) -> dict[str, Any]:
        outcome, partial_reason = self.ending(partial_reason)
        return {
            "text": self.text(),
            "conversation_id": self.conversation_id,
            "outcome": outcome,
            "partial_reason": partial_reason,
            "error": self.error,
            "events_received": self.events_received,
            "skipped_events": self.skipped_events,
            "last_event_id": self.ids.highest,
            "missing_event_ids": self.ids.missing(),
            "missing_event_count": self.ids.missing_count,
            "request_id": self.request_id,
        }


# A chat delta as the sandbox and most servers write it (one optional space after each colon and comma):
#   id: 7
#   data: {"type":"delta","text":"Hi"}
_DELTA = rf'{_BOUNDARY}{_ID}data: ?\{{"type": ?"delta", ?"text": ?"({_BODY})"\}}\n\n'
# A Lexi text event as Lexi writes it (`id:` only on some streams):
#   event: text
#   data: {"delta":"Hi","conversation_id":"7c9e6679-…"}
_LEXI_TEXT = (
    rf'{_BOUNDARY}{_ID}event: ?text\ndata: ?\{{"delta": ?"({_BODY})", '
    rf'?"conversation_id": ?"({_PLAIN}*+)"\}}\n\n'
)


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    """Compiled on first use: these take milliseconds to compile, which a cold start need not pay."""
    return re.compile(pattern)


class ChatFold(_Fold):
    """The Lexey customer and management streams."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.status_events: list[str] = []

    def fast_path(self) -> FastPath:
        return partial(_split, _compiled(_DELTA), take=self._take_deltas)

    def _take_deltas(self, parts: list[Any]) -> None:
        """Fold back-to-back deltas (see _split) as `feed` folds each (message events, valid, not [DONE])."""
        self._take_run(parts[1::3], parts[2::3])

    def _handle(self, event: Event) -> bool:
        if event.type != "message":
            return True  # a named event the chat APIs do not define: ignored
        obj = load_object(event.data)
        if obj is None:
            return False
        kind = obj.get("type")
        if kind == "delta":
            text = obj.get("text")
            if not isinstance(text, str):
                return False
            self._append_text(text)
        elif kind == "status":
            status = obj.get("status")
            if not isinstance(status, str):
                return False
            self.status_events.append(status[:200])
        elif kind == "error":
            self._set_error(obj.get("message"), obj.get("code"))
        return True

    def result(self, partial_reason: PartialReason | None = None) -> ChatResult:
        return ChatResult(
            **self._common(partial_reason),
            conversation_status=self.status_events[-1] if self.status_events else None,
            status_events=self.status_events,
        )


class LexiFold(_Fold):
    """Lexi's named-event stream."""

    def __init__(
        self, *, idempotency_key: str | None = None, rate_limit: RateLimit | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.idempotency_key = idempotency_key
        self.rate_limit = rate_limit
        self.thinking: list[str] = []
        self.tool_steps: list[ToolStep] = []
        self.message_id: str | None = None
        self.credits_remaining: int | None = None

    def fast_path(self) -> FastPath:
        return partial(_split, _compiled(_LEXI_TEXT), take=self._take_texts)

    def _take_texts(self, parts: list[Any]) -> None:
        """Fold back-to-back `text` events (see _split) as `feed` folds each."""
        if self.conversation_id is None:  # the first non-empty one, as _handle takes it
            self.conversation_id = next((c[:200] for c in parts[3::4] if c), None)
        self._take_run(parts[1::4], parts[2::4])

    def _handle(self, event: Event) -> bool:
        kind = event.type
        if kind == "error":
            obj = load_object(event.data)
            if obj is None:  # not JSON: keep the raw text as the message
                self._set_error(event.data or "upstream error", None)
                return True
            inner = obj.get("error")
            source = inner if isinstance(inner, dict) else obj
            self._set_error(source.get("message"), source.get("code"))
            return True
        if kind not in ("text", "thinking", "tool_step", "done"):
            return True  # unknown event names (and plain `message` events other than [DONE]) are ignored
        obj = load_object(event.data)
        if obj is None:
            return False
        if kind == "text":
            delta = obj.get("delta")
            if not isinstance(delta, str):
                return False
            cid = obj.get("conversation_id")
            if self.conversation_id is None and isinstance(cid, str) and cid:
                self.conversation_id = cid[:200]
            self._append_text(delta)
        elif kind == "thinking":
            text = obj.get("text")
            if not isinstance(text, str):
                return False
            fit = self._take(len(text))
            if fit:
                self.thinking.append(text[:fit])
        elif kind == "tool_step":
            tool, status, summary = obj.get("tool"), obj.get("status"), obj.get("summary")
            if not isinstance(tool, str) or not isinstance(status, str):
                return False
            if self._take(len(tool) + len(status) + (len(summary) if isinstance(summary, str) else 0)):
                self.tool_steps.append(
                    ToolStep(tool=tool, status=status, summary=summary if isinstance(summary, str) else None)
                )
        else:  # done
            credits, message_id = obj.get("credits_remaining"), obj.get("message_id")
            if isinstance(credits, int | float) and not isinstance(credits, bool) and math.isfinite(credits):
                self.credits_remaining = int(credits)
            if isinstance(message_id, str):
                self.message_id = message_id[:200]
        return True

    def result(self, partial_reason: PartialReason | None = None) -> LexiResult:
        return LexiResult(
            **self._common(partial_reason),
            message_id=self.message_id,
            credits_remaining=self.credits_remaining,
            tool_steps=self.tool_steps,
            thinking=self.thinking,
            rate_limit=self.rate_limit,
            idempotency_key=self.idempotency_key,
        )


async def read_stream(
    chunks: AsyncIterator[bytes],
    fold: _Fold,
    *,
    max_event_bytes: int,
    on_text: OnText | None = None,
    progress_interval: float = 0.05,
) -> PartialReason | None:
    """Feed `chunks` through the SSE decoder into `fold` until `[DONE]`; why it stopped early, if it did.

    `on_text` is called with the text so far at most once per `progress_interval` seconds.
    """
    decoder = SSEDecoder(max_event_bytes)
    fast = fold.fast_path()
    last_progress = -math.inf
    seen_version = 0
    reason: PartialReason | None = "ended_without_done"
    try:
        async for chunk in chunks:
            for event in decoder.feed_iter(chunk, fast):
                fold.feed(event)
                if fold.done:
                    break
            if fold.done:
                reason = None
                break
            if fold.too_large:
                reason = "reply_too_large"
                break
            if on_text is not None and fold.text_version != seen_version:
                now = anyio.current_time()
                if now - last_progress >= progress_interval:
                    last_progress, seen_version = now, fold.text_version
                    await on_text(fold.text())
    except httpx2.TimeoutException:
        reason = "timeout"
    except httpx2.TransportError:
        reason = "connection_lost"
    # A final event that never got its blank line is dropped, as the spec says (reason stays as set).
    if on_text is not None and fold.text_version != seen_version:
        await on_text(fold.text())  # the last words too, so a host showing progress shows the whole reply
    return reason
