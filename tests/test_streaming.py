"""Folding a stream into a result: the chat and Lexi event semantics, at the byte level."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lexey_mcp.pacing
from lexey_mcp.models import ChatResult, LexiResult
from lexey_mcp.pacing import TRICKLE_PAUSE, TRICKLE_WAIT
from lexey_mcp.sse import SSEDecoder
from lexey_mcp.stream_reading import read_stream
from lexey_mcp.streaming import ChatFold, IdTracker, LexiFold
from tests.streams import (
    CID,
    CUSTOMER_KEY,
    aiter_chunks,
    arriving,
    bytewise,
    chat_event,
    chat_stream,
    lexi_event,
    split_at,
)

pytestmark = pytest.mark.anyio


def chat_fold(**overrides: object) -> ChatFold:
    args: dict[str, Any] = {
        "conversation_id": CID,
        "request_id": "req_1",
        "max_reply_chars": 10_000,
        "secrets": [CUSTOMER_KEY],
    }
    return ChatFold(**{**args, **overrides})


def lexi_fold(**overrides: object) -> LexiFold:
    args: dict[str, Any] = {"conversation_id": None, "idempotency_key": None, "max_reply_chars": 10_000, "secrets": []}
    return LexiFold(**{**args, **overrides})


async def fold_chat(chunks: Sequence[bytes] | bytes, **overrides: object) -> ChatResult:
    fold = chat_fold(**overrides)
    parts = [chunks] if isinstance(chunks, bytes) else chunks
    reason = await read_stream(aiter_chunks(parts), fold, max_event_bytes=4096)
    return fold.result(reason)


async def fold_lexi(chunks: Sequence[bytes] | bytes) -> LexiResult:
    fold = lexi_fold()
    parts = [chunks] if isinstance(chunks, bytes) else chunks
    return fold.result(await read_stream(aiter_chunks(parts), fold, max_event_bytes=4096))


async def test_complete_reply_appends_every_delta_in_order() -> None:
    result = await fold_chat(chat_stream("Our", " business hours", " are 9am–5pm."))
    assert result.text == "Our business hours are 9am–5pm."
    assert result.outcome == "complete"
    assert result.partial_reason is None
    assert result.events_received == 3
    assert result.last_event_id == 4
    assert result.missing_event_ids == []
    assert result.request_id == "req_1"
    assert result.conversation_id == CID


async def test_done_with_and_without_id() -> None:
    with_id = await fold_chat(chat_event(1, {"type": "delta", "text": "a"}) + chat_event(2, "[DONE]"))
    without = await fold_chat(chat_event(1, {"type": "delta", "text": "a"}) + chat_event(None, "[DONE]"))
    assert (with_id.outcome, with_id.last_event_id) == ("complete", 2)
    assert (without.outcome, without.last_event_id) == ("complete", 1)


async def test_done_needs_exact_data() -> None:
    result = await fold_chat(b"id: 1\ndata:[DONE]\n\n")
    assert result.outcome == "complete"
    result = await fold_chat(b"id: 1\ndata: [DONE]x\n\n")
    assert (result.outcome, result.skipped_events, result.partial_reason) == ("partial", 1, "ended_without_done")


async def test_anything_after_done_is_ignored() -> None:
    body = chat_stream("a") + chat_event(3, {"type": "delta", "text": "LATE"}) + chat_event(9, {"type": "error"})
    result = await fold_chat(body)
    assert (result.text, result.outcome, result.last_event_id, result.error) == ("a", "complete", 2, None)


def test_the_fold_itself_ignores_events_after_done() -> None:
    # read_stream stops reading at [DONE]; a fold fed directly must still ignore what follows.
    fold = chat_fold()
    fold.feed(SSEDecoder().feed(chat_stream("a") + chat_event(9, {"type": "delta", "text": "LATE"})))
    result = fold.result(None)
    assert (result.text, result.last_event_id, result.events_received) == ("a", 2, 1)


async def test_invalid_json_is_skipped_even_when_the_fields_used_are_fine() -> None:
    body = b"".join(
        [
            chat_event(1, '{"type":"delta","text":"NO","score":NaN}'),
            chat_event(2, '{"type":"status","status":"escalated","at":Infinity}'),
            chat_event(3, {"type": "delta", "text": "yes"}),
            chat_event(4, "[DONE]"),
        ]
    )
    result = await fold_chat(body)
    assert result.text == "yes"
    assert result.status_events == []
    assert result.skipped_events == 2


async def test_status_events_in_order_and_text_after_them() -> None:
    body = b"".join(
        [
            chat_event(1, {"type": "delta", "text": "Let me "}),
            chat_event(2, {"type": "status", "status": "pending"}),
            chat_event(3, {"type": "status", "status": "escalated"}),
            chat_event(4, {"type": "delta", "text": "get a human."}),
            chat_event(5, "[DONE]"),
        ]
    )
    result = await fold_chat(body)
    assert result.status_events == ["pending", "escalated"]
    assert result.conversation_status == "escalated"
    assert result.text == "Let me get a human."


async def test_id_gaps_are_reported() -> None:
    body = b"".join(chat_event(i, {"type": "delta", "text": str(i)}) for i in (2, 3, 6)) + chat_event(7, "[DONE]")
    result = await fold_chat(body)
    assert result.missing_event_ids == [1, 4, 5]
    assert result.missing_event_count == 3
    assert result.last_event_id == 7


def test_id_tracker_repeats_regressions_and_late_arrivals() -> None:
    ids = IdTracker()
    for raw in ["1", "5", "5", "3", "2", "x", "-1", "", None, "9"]:
        ids.see(raw)
    assert ids.highest == 9
    assert ids.missing() == [4, 6, 7, 8]
    ids.see("7")
    assert ids.missing() == [4, 6, 8]


def test_id_tracker_huge_gap_is_counted_not_listed() -> None:
    ids = IdTracker()
    ids.see("1")
    ids.see("999999999999")
    assert ids.missing_count == 999999999997
    assert len(ids.missing()) == 1000
    ids.see("12345678901234567890123")  # longer than any real id: not an integer for gap checks
    assert ids.highest == 999999999999


async def test_non_integer_ids_count_but_take_no_part_in_gaps() -> None:
    body = b'id: abc\ndata: {"type":"delta","text":"a"}\n\nid: 1\ndata: [DONE]\n\n'
    result = await fold_chat(body)
    assert (result.events_received, result.missing_event_ids, result.last_event_id) == (1, [], 1)


async def test_malformed_json_and_schema_violations_are_skipped_and_counted() -> None:
    bad = [
        "{not json",
        '["a"]',
        '"text"',
        "42",
        "null",
        '{"type":"delta"}',
        '{"type":"delta","text":5}',
        '{"type":"delta","text":NaN}',
        '{"type":"status","status":null}',
        "[" * 100_000,
        '{"type":"delta","text":"x","n":' + "9" * 5000 + "}",
    ]
    body = b"".join(chat_event(i, payload) for i, payload in enumerate(bad, 1))
    body += chat_event(len(bad) + 1, {"type": "delta", "text": "ok"}) + chat_event(len(bad) + 2, "[DONE]")
    result = await fold_chat(body)
    assert result.text == "ok"
    assert result.outcome == "complete"
    assert result.skipped_events == len(bad)
    assert result.events_received == len(bad) + 1


async def test_unknown_types_and_fields_are_ignored_not_skipped() -> None:
    body = b"".join(
        [
            chat_event(1, {"type": "typing", "x": 1}),
            chat_event(2, {"type": "delta", "text": "a", "extra": {"nested": True}}),
            b'event: custom\nid: 3\ndata: {"type":"delta","text":"NOT TEXT"}\n\n',
            chat_event(4, "[DONE]"),
        ]
    )
    result = await fold_chat(body)
    assert (result.text, result.skipped_events, result.events_received) == ("a", 0, 3)


async def test_mid_stream_error_keeps_the_text_so_far() -> None:
    body = b"".join(
        [
            chat_event(1, {"type": "delta", "text": "Half an ans"}),
            chat_event(2, {"type": "error", "message": "Model overloaded"}),
            chat_event(3, "[DONE]"),
        ]
    )
    result = await fold_chat(body)
    assert result.outcome == "error"
    assert result.text == "Half an ans"
    assert result.error is not None
    assert result.error.message == "Model overloaded"
    assert result.partial_reason is None


async def test_error_message_is_redacted() -> None:
    body = chat_event(1, {"type": "error", "message": f"bad key {CUSTOMER_KEY} and lxm_abcdefgh123"})
    result = await fold_chat(body + chat_event(2, "[DONE]"))
    assert result.error is not None
    assert CUSTOMER_KEY not in result.error.message
    assert "lxm_abcdefgh123" not in result.error.message


async def test_safety_filter_refusal_is_a_normal_complete_reply() -> None:
    result = await fold_chat(chat_stream("I can't help with that request."))
    assert (result.outcome, result.text, result.error) == ("complete", "I can't help with that request.", None)


async def test_clean_end_without_done_is_partial() -> None:
    result = await fold_chat(chat_stream("a", "b", done=False))
    assert (result.outcome, result.partial_reason, result.text) == ("partial", "ended_without_done", "ab")


async def test_truncated_final_event_is_dropped_and_partial() -> None:
    result = await fold_chat(chat_stream("a", done=False) + b'id: 2\ndata: {"type":"delta","text":"b"}')
    assert (result.outcome, result.text, result.events_received) == ("partial", "a", 1)


async def test_dropped_connection_is_partial_with_the_text() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield chat_stream("kept", done=False)
        raise httpx2.RemoteProtocolError("peer closed connection without sending complete message body")

    fold = chat_fold()
    result = fold.result(await read_stream(chunks(), fold, max_event_bytes=4096))
    assert (result.outcome, result.partial_reason, result.text) == ("partial", "connection_lost", "kept")


async def test_read_timeout_is_partial_with_the_text() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield chat_stream("kept", done=False)
        raise httpx2.ReadTimeout("silence")

    fold = chat_fold()
    result = fold.result(await read_stream(chunks(), fold, max_event_bytes=4096))
    assert (result.outcome, result.partial_reason, result.text) == ("partial", "timeout", "kept")


async def test_reply_cap_stops_reading_and_keeps_exactly_the_cap() -> None:
    produced = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal produced
        for i in range(1, 1_000_000):
            produced += 1
            yield chat_event(i, {"type": "delta", "text": "0123456789"})

    fold = chat_fold(max_reply_chars=1000)
    result = fold.result(await read_stream(endless(), fold, max_event_bytes=4096))
    assert (result.outcome, result.partial_reason, len(result.text)) == ("partial", "reply_too_large", 1000)
    assert produced < 110


@pytest.mark.parametrize("chunked", [False, True])
async def test_reply_cap_hit_just_before_done_is_still_partial(chunked: bool) -> None:
    body = chat_stream("abc", "def")  # [DONE] in the same chunk as the delta that crosses the cap
    result = await fold_chat(bytewise(body) if chunked else body, max_reply_chars=5)
    assert (result.outcome, result.partial_reason, result.text) == ("partial", "reply_too_large", "abcde")


async def test_oversized_event_is_skipped_and_the_stream_goes_on() -> None:
    body = chat_event(1, {"type": "delta", "text": "x" * 10_000}) + b"".join(
        [chat_event(2, {"type": "delta", "text": "fine"}), chat_event(3, "[DONE]")]
    )
    result = await fold_chat(body)
    assert (result.text, result.skipped_events, result.outcome, result.missing_event_ids) == ("fine", 1, "complete", [])


async def test_progress_is_coalesced_and_carries_the_text_so_far() -> None:
    seen: list[str] = []

    async def on_text(text: str) -> None:
        seen.append(text)

    async def slow() -> AsyncIterator[bytes]:
        for i in range(1, 5):
            yield chat_event(i, {"type": "delta", "text": f"{i} "})
            await anyio.sleep(0.03)  # deltas that trickle in are what this tests
        yield chat_event(5, {"type": "delta", "text": "5 "}) + chat_event(6, "[DONE]")

    fold = chat_fold()
    await read_stream(slow(), fold, max_event_bytes=4096, on_text=on_text, progress_interval=0.05)
    assert seen[0] == "1 "
    assert 1 <= len(seen) <= 4  # four chunks 30 ms apart: at most one message per 50 ms
    assert all(b.startswith(a) and b != a for a, b in itertools.pairwise(seen))
    # The last words come with the result, not in a progress notification right before it (which TypeScript SDK
    # clients on stdio lose): none is sent once the stream has ended.
    assert fold.text() == "1 2 3 4 5 "
    assert fold.text() not in seen


def deltas(count: int) -> list[bytes]:
    """`count` deltas ("1 ", "2 ", …), then [DONE]."""
    events = [chat_event(i, {"type": "delta", "text": f"{i} "}) for i in range(1, count + 1)]
    return [*events, chat_event(count + 1, "[DONE]")]


async def test_streams_at_once_share_the_progress_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    # 20 calls a second in all: 20 streams at once report once a second each, a lone one at its own 0.05 s pace.
    monkeypatch.setattr(lexey_mcp.pacing, "PROGRESS_RATE", 20.0)
    calls: Counter[int] = Counter()

    async def stream(n: int) -> None:
        async def on_text(text: str) -> None:
            calls[n] += 1

        chunks = arriving(deltas(50), every=0.02)  # a second long
        await read_stream(chunks, chat_fold(), max_event_bytes=4096, on_text=on_text, progress_interval=0.05)

    async with anyio.create_task_group() as group:
        for n in range(20):
            group.start_soon(stream, n)
    # The first words and the last, and at most one call in between.
    assert len(calls) == 20
    assert max(calls.values()) <= 3
    await stream(20)  # alone, once the others are done
    assert calls[20] >= 6


async def read_timed(chunks: AsyncIterator[bytes], deadline: float = math.inf) -> tuple[ChatResult, list[float]]:
    """The folded result, and when each chunk was taken."""
    taken: list[float] = []

    async def watched() -> AsyncIterator[bytes]:
        async for chunk in chunks:
            taken.append(anyio.current_time())
            yield chunk

    fold = chat_fold()
    reason = await read_stream(watched(), fold, max_event_bytes=4096, deadline=deadline)
    return fold.result(reason), taken


def waits(taken: list[float]) -> int:
    return sum(1 for a, b in itertools.pairwise(taken) if b - a > TRICKLE_WAIT)


async def test_with_many_streams_a_live_trickle_is_read_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # 50 events 20 ms apart: after each wait for the network, the next read waits TRICKLE_PAUSE and then takes what
    # arrived meanwhile at once; a read at a time would wait 50 times.
    monkeypatch.setattr(lexey_mcp.pacing, "TRICKLE_STREAMS", 1)
    start = anyio.current_time()
    result, taken = await read_timed(arriving(deltas(50), every=0.02))
    elapsed = anyio.current_time() - start
    assert (result.outcome, result.text) == ("complete", "".join(f"{i} " for i in range(1, 51)))
    assert waits(taken) <= 2 * (1.0 / TRICKLE_PAUSE + 1)  # each pause, and the wait for the next arrival after it
    assert elapsed < 1.0 + TRICKLE_PAUSE + 0.5  # at most a pause behind the stream (and a loaded machine's slack)


async def test_with_few_streams_a_live_trickle_is_read_as_it_comes() -> None:
    result, taken = await read_timed(arriving(deltas(50), every=0.02))
    assert result.outcome == "complete"
    assert waits(taken) >= 40  # no pauses: a wait for each event


async def test_what_has_arrived_is_read_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lexey_mcp.pacing, "TRICKLE_STREAMS", 1)
    with anyio.fail_after(1.0):  # a pause after each of 2,001 chunks would take 200 s
        result, _ = await read_timed(arriving(deltas(2000), every=0))
    assert (result.outcome, result.events_received) == ("complete", 2000)


async def test_a_pause_never_runs_past_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # The second delta comes after a long wait, [DONE] 20 ms later, and the deadline 50 ms after that delta: a pause
    # there would miss [DONE] and end the reply as a timeout.
    monkeypatch.setattr(lexey_mcp.pacing, "TRICKLE_STREAMS", 1)
    chunks = arriving(deltas(2), at=[0.0, 0.3, 0.32])
    result, _ = await read_timed(chunks, deadline=anyio.current_time() + 0.35)
    assert (result.outcome, result.text) == ("complete", "1 2 ")


# Lexi's named events.

LEXI_CID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def lexi_stream() -> bytes:
    return b"".join(
        [
            lexi_event("thinking", {"text": "Looking up Acme."}),
            lexi_event("tool_step", {"tool": "search_contacts", "status": "started"}),
            lexi_event("tool_step", {"tool": "search_contacts", "status": "completed", "summary": "Found 1 contact"}),
            lexi_event("text", {"delta": "Jane Doe ", "conversation_id": LEXI_CID}),
            lexi_event("text", {"delta": "is the CEO.", "conversation_id": LEXI_CID}),
            lexi_event("done", {"credits_remaining": 4840, "message_id": "msg_01HY1"}),
            b"data: [DONE]\n\n",
        ]
    )


async def test_lexi_complete_stream() -> None:
    result = await fold_lexi(lexi_stream())
    assert result.text == "Jane Doe is the CEO."
    assert result.outcome == "complete"
    assert result.conversation_id == LEXI_CID
    assert result.thinking == ["Looking up Acme."]
    assert [(s.tool, s.status, s.summary) for s in result.tool_steps] == [
        ("search_contacts", "started", None),
        ("search_contacts", "completed", "Found 1 contact"),
    ]
    assert (result.credits_remaining, result.message_id) == (4840, "msg_01HY1")
    assert result.events_received == 6


async def test_lexi_conversation_id_comes_from_the_first_text_event() -> None:
    body = (
        lexi_event("text", {"delta": "a", "conversation_id": LEXI_CID})
        + lexi_event("text", {"delta": "b", "conversation_id": "other"})
        + b"data: [DONE]\n\n"
    )
    assert (await fold_lexi(body)).conversation_id == LEXI_CID


@pytest.mark.parametrize(
    ("data", "message", "code"),
    [
        ('{"code":"internal_error","message":"Tool crashed"}', "Tool crashed", "internal_error"),
        ('{"error":{"code":"rate_limited","message":"Slow down"}}', "Slow down", "rate_limited"),
        ("Tool crashed, not JSON", "Tool crashed, not JSON", None),
    ],
)
async def test_lexi_error_event_variants(data: str, message: str, code: str | None) -> None:
    body = lexi_event("text", {"delta": "so far", "conversation_id": LEXI_CID}) + lexi_event("error", data)
    result = await fold_lexi(body + b"data: [DONE]\n\n")
    assert result.outcome == "error"
    assert result.text == "so far"
    assert result.error is not None
    assert (result.error.message, result.error.code) == (message, code)


async def test_lexi_unknown_and_misspelt_event_names_are_ignored() -> None:
    body = b"".join(
        [
            lexi_event("text ", {"delta": "NO", "conversation_id": LEXI_CID}),
            lexi_event("citation", {"url": "x"}),
            lexi_event("text", {"delta": "yes", "conversation_id": LEXI_CID}),
            b"data: [DONE]\n\n",
        ]
    )
    result = await fold_lexi(body)
    assert (result.text, result.skipped_events, result.events_received) == ("yes", 0, 3)


async def test_lexi_bad_shapes_are_skipped() -> None:
    body = b"".join(
        [
            lexi_event("text", {"conversation_id": LEXI_CID}),
            lexi_event("tool_step", {"status": "started"}),
            lexi_event("thinking", {"text": 3}),
            lexi_event("done", "{oops"),
            lexi_event("done", {"credits_remaining": True, "message_id": 5}),
            b"data: [DONE]\n\n",
        ]
    )
    result = await fold_lexi(body)
    assert result.skipped_events == 4
    assert (result.credits_remaining, result.message_id) == (None, None)


# Any chunking of a valid stream folds to the same result.

_delta = st.text(st.characters(codec="utf-8"), max_size=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_delta, max_size=8), st.sampled_from([b"\n", b"\r\n", b"\r"]), st.booleans(), st.data())
def test_any_chunking_folds_to_the_same_result(
    deltas: list[str], ending: bytes, with_status: bool, data: st.DataObject
) -> None:
    body = chat_stream(*deltas, status="escalated" if with_status else None).replace(b"\n", ending)
    body = b": hello" + ending + body
    cuts = data.draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=10))

    async def both() -> tuple[ChatResult, ChatResult]:
        return await fold_chat(body), await fold_chat(split_at(body, cuts))

    whole, chunked = anyio.run(both)
    assert chunked == whole
    assert whole.text == "".join(deltas)
    assert whole.outcome == "complete"


async def test_every_single_byte_split_of_a_lexi_stream() -> None:
    whole = await fold_lexi(lexi_stream())
    assert await fold_lexi(bytewise(lexi_stream())) == whole
    body = lexi_stream()
    for cut in range(1, len(body)):
        assert await fold_lexi([body[:cut], body[cut:]]) == whole


# Unknown kinds are counted, so a vendor format change does not look like silence.


async def test_a_stream_of_unknown_kinds_says_what_it_ignored() -> None:
    body = b"".join(
        [
            chat_event(1, {"type": "delta_v2", "content": "Hello"}),
            chat_event(2, {"type": "delta_v2", "content": " there"}),
            b'event: token\nid: 3\ndata: {"text":"x"}\n\n',
            chat_event(4, {"kind": "delta"}),
            chat_event(5, "[DONE]"),
        ]
    )
    result = await fold_chat(body)
    assert (result.outcome, result.text, result.skipped_events) == ("complete", "", 0)
    assert (result.ignored_events, result.ignored_event_types) == (4, ["delta_v2", "token"])


async def test_ignored_kinds_are_listed_up_to_ten_and_all_counted() -> None:
    body = b"".join(chat_event(i, {"type": f"kind{i % 25}"}) for i in range(1, 101)) + chat_event(101, "[DONE]")
    result = await fold_chat(body)
    assert result.ignored_events == 100
    assert result.ignored_event_types == [f"kind{i}" for i in range(1, 11)]


async def test_lexi_ignored_event_names_are_counted() -> None:
    body = lexi_event("text_v2", {"delta": "x"}) + b"data: not done\n\n" + b"data: [DONE]\n\n"
    result = await fold_lexi(body)
    assert (result.ignored_events, result.ignored_event_types) == (2, ["text_v2", "message"])


# Every per-stream structure is bounded, whatever the upstream sends.


async def test_statuses_keep_the_last_hundred_and_count_the_rest() -> None:
    body = b"".join(chat_event(i, {"type": "status", "status": f"s{i}" + "x" * 500}) for i in range(1, 1001))
    result = await fold_chat(body + chat_event(1001, "[DONE]"))
    assert len(result.status_events) == 100
    assert result.status_events_omitted == 900
    assert result.status_events[-1] == "s1000" + "x" * 195
    assert result.conversation_status == result.status_events[-1]


def test_id_gaps_keep_a_thousand_ranges_and_count_the_rest() -> None:
    ids = IdTracker()
    for n in range(2, 6002, 2):  # 3,000 one-id gaps: 1, 3, 5, …
        ids.see(str(n))
    assert ids.missing_count == 3000
    assert len(ids._starts) == 1000
    assert ids.missing()[:3] == [1, 3, 5]
    ids.see("1")  # a late arrival in a kept range fills it
    assert ids.missing_count == 2999


def test_a_late_id_splitting_a_range_at_the_cap_keeps_the_count() -> None:
    ids = IdTracker()
    for n in range(2, 2002, 2):  # exactly 1,000 ranges, the last one 1999
        ids.see(str(n))
    ids.see("3000")  # one more gap, 2001-2999: counted only
    ids.see("10000")  # 3001-9999: counted only
    assert ids.missing_count == 1000 + 999 + 6999
    ids.see("2500")  # inside a gap that is only counted: cannot be taken off, stays counted as missing
    assert len(ids._starts) == 1000


async def test_lexi_tool_steps_and_thinking_are_capped_and_counted() -> None:
    body = b"".join(lexi_event("tool_step", {"tool": "t", "status": "started"}) for _ in range(300))
    body += b"".join(lexi_event("thinking", {"text": "hmm"}) for _ in range(250))
    result = await fold_lexi(body + b"data: [DONE]\n\n")
    assert (len(result.tool_steps), result.tool_steps_omitted) == (200, 100)
    assert (len(result.thinking), result.thinking_omitted) == (200, 50)
    assert result.outcome == "complete"


def test_many_tiny_deltas_fold_to_the_exact_text_in_few_pieces() -> None:
    """Pieces are joined once per batch: the text stays exact and the pieces held stay few, whatever the batches."""
    fold = chat_fold(max_reply_chars=1_000_000)
    decoder = SSEDecoder()
    deltas = [f"{i % 10}" for i in range(20_000)]
    sizes = itertools.cycle([1, 7, 700, 1_500, 3])
    start, texts_seen = 0, []
    while start < len(deltas):
        batch = deltas[start : start + next(sizes)]
        body = b"".join(chat_event(start + i + 1, {"type": "delta", "text": d}) for i, d in enumerate(batch))
        fold.feed(decoder.feed(body))
        start += len(batch)
        assert len(fold._parts) <= 2_000  # without joining, 20,000 pieces
        if start % 9 == 0:
            texts_seen.append((start, fold.text()))
    assert fold.text() == "".join(deltas)
    assert all(text == "".join(deltas[:n]) for n, text in texts_seen)
    assert (fold.events_received, fold.ids.highest, fold.ids.missing_count) == (20_000, 20_000, 0)
