"""The fast path against straightforward references: same events, same folds, for any bytes and any chunking.

Three references, from the most to the least independent:
- `reference_events` / `reference_chat`: the WHATWG interpretation and the chat fold written out plainly over
  the whole body (no caps, so chunking cannot matter), with `json.loads`;
- `generic_fold`: the general parser alone (`SSEDecoder.feed`, one `Event` at a time into `fold.feed`), the
  path every event took before the fast path existed; chunk for chunk it must agree with `read_stream`,
  caps included (where a cap bites can depend on the chunking, so the chunkings are the same);
- `SSEDecoder.feed_iter` with matchers that take nothing or everything they can see, at tiny windows.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lexey_mcp.models import ChatResult, PartialReason
from lexey_mcp.sse import BOM, Event, SSEDecoder
from lexey_mcp.streaming import ChatFold, IdTracker, LexiFold, _Fold, read_stream
from tests.streams import aiter_chunks, chat_stream, lexi_event, split_at

# The reference WHATWG decoder and chat fold.


def reference_events(body: bytes) -> list[tuple[str, str, str | None]]:
    """(type, data, id) of every event in a whole body, straight from the spec's steps."""
    text = body.decode("utf-8", "replace")
    text = text.removeprefix("\ufeff")
    lines = re.split("\r\n|\r|\n", text)
    lines.pop()  # the last line has no line end yet (or is the "" after the final one): not a line
    events: list[tuple[str, str, str | None]] = []
    data: list[str] = []
    event_type, event_id = "", None
    for line in lines:
        if not line:
            if data:
                events.append((event_type or "message", "\n".join(data), event_id))
            data, event_type, event_id = [], "", None
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            event_id = value
    return events


def reference_chat(body: bytes) -> dict[str, Any]:
    """The chat fold of a whole body, plainly: what `ChatFold` must make of it when no cap bites."""
    texts: list[str] = []
    statuses: list[str] = []
    error, received, skipped, done = None, 0, 0, False
    ids = IdTracker()

    def reject(name: str) -> float:
        raise ValueError(name)

    for event_type, data, event_id in reference_events(body):
        ids.see(event_id)
        if data == "[DONE]" and event_type == "message":
            done = True
            break
        received += 1
        if event_type != "message":
            continue
        try:
            obj = json.loads(data, parse_constant=reject)
        except (ValueError, RecursionError):
            obj = None
        kind = obj.get("type") if isinstance(obj, dict) else None
        if not isinstance(obj, dict):
            skipped += 1
        elif kind == "delta" and isinstance(obj.get("text"), str):
            texts.append(obj["text"])
        elif kind == "status" and isinstance(obj.get("status"), str):
            statuses.append(obj["status"][:200])
        elif kind in ("delta", "status"):
            skipped += 1
        elif kind == "error" and error is None:
            error = obj.get("message") if isinstance(obj.get("message"), str) else "upstream error"
    return {
        "text": "".join(texts),
        "status_events": statuses,
        "events_received": received,
        "skipped_events": skipped,
        "outcome": "error" if error is not None else "complete" if done else "partial",
        "last_event_id": ids.highest,
        "missing_event_ids": ids.missing(),
        "error": error,
    }


# The general path alone, chunk for chunk as read_stream drives it.


def generic_fold(chunks: Sequence[bytes], fold: _Fold, max_event_bytes: int) -> PartialReason | None:
    decoder = SSEDecoder(max_event_bytes)
    for chunk in chunks:
        for event in decoder.feed(chunk):
            fold.feed(event)
            if fold.done:
                return None
        if fold.too_large:
            return "reply_too_large"
    return "ended_without_done"


def fast_fold(chunks: Sequence[bytes], fold: _Fold, max_event_bytes: int) -> PartialReason | None:
    """`read_stream`, run to its end at once: with every chunk at hand and no progress it never waits."""
    coroutine = read_stream(aiter_chunks(chunks), fold, max_event_bytes=max_event_bytes)
    try:
        coroutine.send(None)
    except StopIteration as finished:
        reason: PartialReason | None = finished.value
        return reason
    coroutine.close()
    raise AssertionError("read_stream waited for something")


def new_chat(max_reply_chars: int) -> ChatFold:
    return ChatFold(conversation_id=None, request_id=None, max_reply_chars=max_reply_chars, secrets=["sekrit"])


def new_lexi(max_reply_chars: int) -> LexiFold:
    return LexiFold(conversation_id=None, request_id=None, max_reply_chars=max_reply_chars, secrets=[])


def both(chunks: Sequence[bytes], make: Any, max_event_bytes: int, max_reply_chars: int) -> tuple[Any, Any]:
    generic, fast = make(max_reply_chars), make(max_reply_chars)
    generic_result = generic.result(generic_fold(chunks, generic, max_event_bytes))
    fast_result = fast.result(fast_fold(chunks, fast, max_event_bytes))
    assert (fast.done, fast.too_large, fast.ids.highest) == (generic.done, generic.too_large, generic.ids.highest)
    return generic_result, fast_result


# Streams: mostly the shapes the fast path takes, with everything that must make it let go mixed in.

# Characters that matter here: ASCII, JSON's escaped ones, multi-byte ones, line separators that are not SSE's.
_texts = st.text(st.sampled_from('ab Z9"\\/\t\n\x00\x7fé—€🦊\u2028\u0085\ufeff'), max_size=12)
_nasty_text = st.sampled_from(
    [
        'a"b',
        "a\\",
        "x\\u00e9",
        "\\ud83e\\udd8a",
        "\\ud83e",
        "tab\tin",
        "nl\\n",
        'q\\"',
        "\\/\\b\\f\\r\\t",
        "\\x",
        "\u2028",
        "\x7f",
        "🦊",
    ]
)


@st.composite
def delta_block(draw: st.DrawFn) -> bytes:
    """A delta in one of the spellings servers use, right or subtly wrong."""
    if draw(st.booleans()):
        text = json.dumps(draw(_texts), ensure_ascii=draw(st.booleans()))[1:-1]
    else:
        text = draw(_nasty_text)
    space = draw(st.sampled_from(["", " "]))
    comma = draw(st.sampled_from([",", ", "]))
    data = draw(
        st.sampled_from(
            [
                f'{{"type":{space}"delta"{comma}"text":{space}"{text}"}}',
                f'{{"text":"{text}","type":"delta"}}',  # another key order
                f'{{"type":"delta","text":"{text}","x":1}}',  # an extra key
                f'{{"type":"delta","text":"{text}"}} ',  # trailing space
                f'{{"type":"delta","text":"{text}"',  # cut short
            ]
        )
    )
    event_id = draw(st.one_of(st.none(), st.integers(0, 30).map(str), st.sampled_from(["x", " 5", "1\x002", "9" * 19])))
    head = "" if event_id is None else f"id:{draw(st.sampled_from(['', ' ']))}{event_id}\n"
    return f"{head}data:{draw(st.sampled_from(['', ' ']))}{data}\n\n".encode()


@st.composite
def lexi_block(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        text = json.dumps(draw(_texts), ensure_ascii=draw(st.booleans()))[1:-1]
    else:
        text = draw(_nasty_text)
    cid = draw(st.sampled_from(["", "c1", "c\\u0032", "x" * 250]))
    event = draw(st.sampled_from(["text", "text", "thinking", "text "]))
    return f'event: {event}\ndata: {{"delta":"{text}","conversation_id":"{cid}"}}\n\n'.encode()


_other = st.sampled_from(
    [
        b"data: [DONE]\n\n",
        b"data:[DONE]\n\n",
        b"event: x\ndata: [DONE]\n\n",
        b'data: {"type":"status","status":"escalated"}\n\n',
        b'data: {"type":"error","message":"boom sekrit"}\n\n',
        b": keep-alive\n",
        b"\n",
        b"\n\n\n",
        b"retry: 10\n\n",
        b"id: 3\n\n",
        b"event: text\n",
        b"data: a\ndata: b\n\n",
        b"data\n\n",
        BOM,
        b"\r",
        b"\r\n",
        b"\xff\xfe",
        b"\xe2\x82",
        b"\x00",
        b'data: {"type":"delta","text":"' + b"L" * 300 + b'"}\n\n',
        b"x" * 200,
        b"data: " + b"y" * 600 + b"\n\n",
        b'data: {"done":1}\n\n',
        b'event: done\ndata: {"credits_remaining":3}\n\n',
    ]
)


@st.composite
def stream(draw: st.DrawFn, block: Any = None) -> bytes:
    pieces = draw(
        st.lists(st.one_of(delta_block() if block is None else block, _other, st.binary(max_size=8)), max_size=20)
    )
    body = b"".join(pieces)
    ending = draw(st.sampled_from([b"\n", b"\n", b"\r\n", b"\r"]))
    return body.replace(b"\n", ending) if ending != b"\n" else body


def chunkings(body: bytes) -> st.SearchStrategy[list[bytes]]:
    whole = st.just([body])
    cuts = st.lists(st.integers(1, max(1, len(body) - 1)), max_size=12).map(lambda c: split_at(body, c))
    return st.one_of(whole, cuts)


_FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SOAK = settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_caps = (st.sampled_from([64, 150, 4096, 1 << 20]), st.sampled_from([5, 40, 10_000]))


def check_same_folds(make: Any, body: bytes, max_event_bytes: int, max_reply_chars: int, data: st.DataObject) -> None:
    generic, fast = both(data.draw(chunkings(body)), make, max_event_bytes, max_reply_chars)
    assert fast == generic


@_FAST
@given(stream(), *_caps, st.data())
def test_chat_fast_path_folds_like_the_general_path(
    body: bytes, max_event_bytes: int, max_reply_chars: int, data: st.DataObject
) -> None:
    check_same_folds(new_chat, body, max_event_bytes, max_reply_chars, data)


@_FAST
@given(stream(lexi_block()), *_caps, st.data())
def test_lexi_fast_path_folds_like_the_general_path(
    body: bytes, max_event_bytes: int, max_reply_chars: int, data: st.DataObject
) -> None:
    check_same_folds(new_lexi, body, max_event_bytes, max_reply_chars, data)


@pytest.mark.soak
@_SOAK
@given(st.one_of(stream(), stream(lexi_block())), *_caps, st.data())
def test_soak_fast_path_folds_like_the_general_path(
    body: bytes, max_event_bytes: int, max_reply_chars: int, data: st.DataObject
) -> None:
    check_same_folds(new_chat, body, max_event_bytes, max_reply_chars, data)
    check_same_folds(new_lexi, body, max_event_bytes, max_reply_chars, data)


@_FAST
@given(stream(), st.data())
def test_chat_fold_matches_the_plain_reference(body: bytes, data: st.DataObject) -> None:
    chunks = data.draw(chunkings(body))
    fold = new_chat(10**9)
    result = fold.result(fast_fold(chunks, fold, 1 << 20))
    expected = reference_chat(body)
    error = expected.pop("error")
    assert {k: getattr(result, k) for k in expected} == expected
    if error is None:
        assert result.error is None
    else:
        assert result.error is not None
        assert result.error.message == error.replace("sekrit", "[redacted]")


class _Greedy:
    """A matcher that takes nothing, or every block it may (recording its events), to check the decoder's side."""

    def __init__(self, take: bool) -> None:
        self.take = take
        self.taken: list[Event] = []

    def __call__(self, text: str) -> Iterator[str]:
        assert text.endswith("\n")
        assert "\r" not in text
        if not self.take:
            yield text
            return
        for block in re.findall(r"(?:[^\n]+\n)*\n", text):  # each block with its blank line; blank lines alone
            if re.search("^retry", block, re.MULTILINE):
                yield block  # the decoder's own state: a matcher must leave it
                continue
            decoder = SSEDecoder(1 << 30)
            decoder.feed(b"\n")  # past the start of a stream, where a BOM would be stripped
            self.taken += decoder.feed(block.encode("utf-8", "surrogateescape"))


@_FAST
@given(stream(), st.sampled_from([1, 3, 16, 64, 1 << 20]), st.booleans(), st.data())
def test_decoder_hands_the_matcher_whole_blocks_and_keeps_order(
    body: bytes, cap: int, take: bool, data: st.DataObject
) -> None:
    chunks = data.draw(chunkings(body))
    plain, fast = SSEDecoder(cap), SSEDecoder(cap)
    matcher = _Greedy(take)
    expected, got = [], []
    for chunk in chunks:
        expected += [e for e in plain.feed(chunk)]
        got += [e for e in fast.feed_iter(chunk, matcher)]
        assert (fast.has_partial_event, fast.retry) == (plain.has_partial_event, plain.retry)
    if take:
        # Whatever the matcher took, it took whole: its events and the rest add up to the same multiset.
        assert Counter(got + matcher.taken) == Counter(expected)
    else:
        assert got == expected


@settings(max_examples=100, deadline=None)
@given(stream(), st.data())
def test_general_decoder_matches_the_plain_reference(body: bytes, data: st.DataObject) -> None:
    decoder = SSEDecoder(1 << 30)
    events = [e for chunk in data.draw(chunkings(body)) for e in decoder.feed(chunk)]
    assert [(e.type, e.data, e.id) for e in events] == reference_events(body)


# The fast path really is taken for what servers send, and lets go of everything else.


@pytest.fixture
def general_lines(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every line the general parser processes."""
    seen: list[bytes] = []
    process = SSEDecoder._process

    def spy(self: SSEDecoder, line: bytes) -> Event | None:
        seen.append(line)
        return process(self, line)

    monkeypatch.setattr(SSEDecoder, "_process", spy)
    return seen


def test_sandbox_and_json_dumps_spellings_take_the_fast_path(general_lines: list[bytes]) -> None:
    from lexey_mcp.sandbox.wire import Frame, dumps, encode_frame

    sandbox = b"".join(encode_frame(Frame(dumps({"type": "delta", "text": t}), id=i)) for i, t in enumerate("ab", 1))
    body = sandbox + chat_stream("c", 'say "hi"\n', "/\\")[: -len(b"id: 4\ndata: [DONE]\n\n")] + b"data: [DONE]\n\n"
    fold = new_chat(100)
    assert fast_fold([body], fold, 4096) is None
    assert fold.result().text == 'abcsay "hi"\n/\\'
    assert general_lines == [b"data: [DONE]", b""]


def test_lexi_text_events_take_the_fast_path(general_lines: list[bytes]) -> None:
    body = b"".join(lexi_event("text", {"delta": d, "conversation_id": "c1"}) for d in ("a", "b")) + b"data: [DONE]\n\n"
    fold = new_lexi(100)
    assert fast_fold([body], fold, 4096) is None
    assert (fold.result().text, fold.conversation_id, fold.events_received) == ("ab", "c1", 2)
    assert general_lines == [b"data: [DONE]", b""]


def test_unicode_escapes_go_the_general_way(general_lines: list[bytes]) -> None:
    # A surrogate pair split over two events must not pair up: each is a lone surrogate in its own string.
    body = b'data: {"type":"delta","text":"\\ud83e"}\n\ndata: {"type":"delta","text":"\\udd8a"}\n\n'
    fold = new_chat(100)
    fast_fold([body], fold, 4096)
    lone_halves = "\ud83e\udd8a"
    assert fold.text() == lone_halves
    assert lone_halves != "🦊"
    assert len(general_lines) == 4


def test_nothing_after_done_counts_even_inside_one_chunk() -> None:
    body = chat_stream("a") + chat_stream("b", "c")
    fold = new_chat(100)
    assert fast_fold([body], fold, 4096) is None
    assert (fold.result().text, fold.events_received, fold.ids.highest) == ("a", 1, 2)


def test_reply_cap_cuts_a_fast_run_where_the_deltas_would() -> None:
    fold = new_chat(7)
    assert fast_fold([chat_stream("abc", "def", "ghi", "jkl", done=False)], fold, 4096) == "reply_too_large"
    result: ChatResult = fold.result("reply_too_large")
    assert (result.text, result.events_received, result.outcome) == ("abcdefg", 4, "partial")


def test_event_cap_holds_for_events_the_fast_path_would_take() -> None:
    big = chat_stream("x" * 3000, "ok")
    generic, fast = both([big], new_chat, 2048, 10_000)
    assert fast == generic
    assert (fast.text, fast.skipped_events) == ("ok", 1)


def test_undecodable_bytes_become_replacement_characters() -> None:
    body = b'id: 1\ndata: {"type":"delta","text":"a\xffb"}\n\nid: 2\ndata: {"type":"delta","text":"c"}\n\n'
    generic, fast = both([body], new_chat, 4096, 100)
    assert fast == generic
    assert fast.text == "a\ufffdbc"


def test_ids_of_a_run_with_gaps_repeats_and_late_ones() -> None:
    body = b"".join(b'id: %d\ndata: {"type":"delta","text":"t"}\n\n' % i for i in (3, 4, 5, 9, 9, 7, 12, 13))
    generic, fast = both([body], new_chat, 4096, 100)
    assert fast == generic
    assert (fast.missing_event_ids, fast.last_event_id) == ([1, 2, 6, 8, 10, 11], 13)


@pytest.mark.anyio
async def test_text_is_built_in_linear_time_from_many_tiny_deltas() -> None:
    # 3 × 512 + 1 deltas through the general path (an event name makes each one take it): pieces are joined
    # in groups, never the whole text again and again.
    body = b"".join(b'event: message\ndata: {"type":"delta","text":"ab"}\n\n' for _ in range(1537))
    fold = new_chat(10**6)
    await read_stream(aiter_chunks([body]), fold, max_event_bytes=4096)
    assert len(fold._parts) == 4
    assert fold.text() == "ab" * 1537


@pytest.mark.anyio
async def test_progress_is_one_message_per_interval_plus_the_last_words(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake clock (binary fractions, so the arithmetic is exact): a delta every 1/128 s, progress at most every
    # 1/16 s. Each delta in its own chunk, all on the fast path.
    now = 0.0
    monkeypatch.setattr(anyio, "current_time", lambda: now)

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal now
        for i in range(1, 201):
            now = i / 128
            yield b'id: %d\ndata: {"type":"delta","text":"x"}\n\n' % i

    seen: list[str] = []

    async def on_text(text: str) -> None:
        seen.append(text)

    fold = new_chat(10_000)
    await read_stream(chunks(), fold, max_event_bytes=4096, on_text=on_text, progress_interval=1 / 16)
    assert [len(text) for text in seen] == [*range(1, 200, 8), 200]  # deltas 1, 9, …, 193, then the rest
