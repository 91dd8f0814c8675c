"""The SSE decoder, rule by rule (WHATWG event-stream interpretation), at the byte level."""

from __future__ import annotations

import httpx2._sse as httpx2_sse
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lexey_mcp.sse import BOM, Event, SSEDecoder
from tests.streams import bytewise, split_at


def decode(*chunks: bytes, max_event_bytes: int = 1024 * 1024) -> list[Event]:
    decoder = SSEDecoder(max_event_bytes)
    return [event for chunk in chunks for event in decoder.feed(chunk)]


def test_one_event_per_blank_line() -> None:
    assert decode(b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n") == [Event("message", "a", "1"), Event("message", "b", "2")]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(ending: bytes) -> None:
    body = ending.join([b"id: 1", b"data: a", b"", b"data: b", b"", b""])
    assert decode(body) == [Event("message", "a", "1"), Event("message", "b", None)]


@pytest.mark.parametrize(("body", "expected"), [(b"data: a\n\r\n", ["a"]), (b"data: a\r\r\n", ["a"])])
def test_mixed_line_endings(body: bytes, expected: list[str]) -> None:
    assert [e.data for e in decode(body)] == expected


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # If the LF opening the second chunk were taken for an empty line, "a" would be dispatched alone.
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [Event("message", "a\nb", None)]


def test_cr_at_end_of_stream_dispatches_nothing() -> None:
    # httpx2's parser dispatches "b" here; the spec drops an event that never got its blank line.
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\r") == [Event("message", "a", None)]
    assert decoder.has_partial_event


def test_leading_bom_is_stripped_even_split_across_chunks() -> None:
    body = BOM + b"data: a\n\n"
    assert decode(body) == [Event("message", "a", None)]
    assert decode(*bytewise(body)) == [Event("message", "a", None)]


def test_only_one_bom_is_stripped() -> None:
    # The second BOM is part of the first line's field name, so the line is an unknown field.
    assert decode(BOM + BOM + b"data: a\n\ndata: b\n\n") == [Event("message", "b", None)]


def test_bom_later_in_the_stream_is_data() -> None:
    assert decode(b"data: a\n\ndata: " + BOM + b"b\n\n")[1].data == "\ufeffb"


def test_comments_and_keepalives_are_ignored() -> None:
    assert decode(b": keep-alive\n\n:\ndata: a\n: inside\n\n") == [Event("message", "a", None)]


def test_one_optional_space_after_the_colon() -> None:
    assert [e.data for e in decode(b"data:a\n\ndata: b\n\ndata:  c\n\n")] == ["a", "b", " c"]


def test_multiline_data_is_joined_with_lf() -> None:
    assert decode(b"data: a\ndata:\ndata: c\n\n")[0].data == "a\n\nc"


def test_data_with_no_value_is_an_empty_event() -> None:
    assert decode(b"data\n\n") == [Event("message", "", None)]
    assert decode(b"data:\n\n") == [Event("message", "", None)]


@pytest.mark.parametrize("block", [b"event: x\n\n", b"id: 7\n\n", b"retry: 10\n\n", b"\n\n\n\n"])
def test_blocks_without_data_are_not_events(block: bytes) -> None:
    assert decode(block) == []


def test_extra_blank_lines_make_no_extra_events() -> None:
    assert len(decode(b"data: a\n\n\n\n\ndata: b\n\n\n")) == 2


def test_event_type_and_unknown_fields() -> None:
    events = decode(b"event: text\nfoo: bar\nDATA: no\nData: no\ndata: a\n\ndata: b\n\n")
    assert events == [Event("text", "a", None), Event("message", "b", None)]


def test_event_type_keeps_trailing_space() -> None:
    assert decode(b"event: text \ndata: a\n\n")[0].type == "text "


def test_id_with_nul_is_ignored() -> None:
    assert decode(b"id: 1\x002\ndata: a\n\n") == [Event("message", "a", None)]


def test_id_belongs_to_its_own_block() -> None:
    assert [e.id for e in decode(b"id: 5\ndata: a\n\ndata: b\n\nid:\ndata: c\n\n")] == ["5", None, ""]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"3000", 3000),
        (b"+5", None),
        (b"  5", None),
        (b" 5", 5),
        (b"5s", None),
        (b"", None),
        (b"1_000", None),
        (b"\xd9\xa3", None),
    ],
)
def test_retry_only_ascii_digits(value: bytes, expected: int | None) -> None:
    decoder = SSEDecoder()
    decoder.feed(b"retry:" + value + b"\n\n")
    assert decoder.retry == expected


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert decode(b"data: a\xffb\xe2\x82\n\n")[0].data == "a\ufffdb\ufffd"


def test_multibyte_split_inside_its_bytes() -> None:
    body = "data: 🦊 und ü\n\n".encode()
    for cut in range(1, len(body)):
        assert decode(body[:cut], body[cut:])[0].data == "🦊 und ü"


def test_line_separators_inside_data_are_data() -> None:
    # U+2028, U+2029 and U+0085 are not SSE line ends (only CR and LF are).
    assert decode("data: a\u2028b\u0085c\u2029d\n\n".encode())[0].data == "a\u2028b\u0085c\u2029d"


def test_truncated_final_event_is_dropped() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b") == [Event("message", "a", None)]
    assert decoder.has_partial_event
    assert not SSEDecoder().has_partial_event


def test_oversized_event_is_flagged_and_the_next_one_survives() -> None:
    big = b"data: " + b"x" * 5000 + b"\n\n"
    events = decode(big + b"id: 9\ndata: ok\n\n", max_event_bytes=1024)
    assert events == [Event("message", "", None, True), Event("message", "ok", "9")]


def test_oversized_line_fed_bytewise_keeps_memory_bounded() -> None:
    decoder = SSEDecoder(max_event_bytes=1024)
    events = []
    for chunk in bytewise(b"id: 3\ndata: " + b"y" * 4000 + b"\n\ndata: ok\n\n"):
        events += decoder.feed(chunk)
        assert decoder._line_size < 1024 + len(b"event: ")  # the cap, and the longest field's name before a value
    assert events == [Event("message", "", "3", True), Event("message", "ok", None)]


def test_oversized_many_lines() -> None:
    body = b"".join(b"data: " + b"z" * 300 + b"\n" for _ in range(10)) + b"\ndata: ok\n\n"
    assert [e.oversized for e in decode(body, max_event_bytes=1024)] == [True, False]


def test_dropped_line_rest_that_starts_with_lf_ends_that_line_only() -> None:
    # The chunk boundary falls right before the LF ending an over-long line: that LF is not a blank line.
    events = decode(b"data: " + b"x" * 2000, b"\nid: 4\n\ndata: ok\n\n", max_event_bytes=1024)
    assert events == [Event("message", "", "4", True), Event("message", "ok", None)]


# A stream where our decoder and httpx2's must agree: every block has data, no BOM, no retry, no NUL.
_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00"), max_size=12)
_block = st.tuples(
    st.one_of(st.none(), st.sampled_from(["text", "done", "thinking"])),
    st.lists(_text, min_size=1, max_size=3),
    st.one_of(st.none(), st.integers(0, 99).map(str)),
)


def _render(blocks: list[tuple[str | None, list[str], str | None]], ending: str) -> bytes:
    out = []
    for event, data, event_id in blocks:
        lines = ([f"event: {event}"] if event else []) + [f"data: {d}" for d in data]
        lines += [f"id: {event_id}"] if event_id else []
        out.append(ending.join(lines) + ending + ending)
    return "".join(out).encode()


@settings(max_examples=200, deadline=None)
@given(st.lists(_block, max_size=6), st.sampled_from(["\n", "\r\n", "\r"]), st.data())
def test_any_chunking_gives_the_same_events_as_httpx2(
    blocks: list[tuple[str | None, list[str], str | None]], ending: str, data: st.DataObject
) -> None:
    body = _render(blocks, ending)
    cuts = data.draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=8))
    ours = decode(*split_at(body, cuts))
    assert ours == decode(body)
    parser = httpx2_sse._SSEParser()
    theirs = [*parser.decode(body.decode()), *parser.flush()]
    assert [(e.type, e.data) for e in ours] == [(e.event, e.data) for e in theirs]


# Runs of usual blocks (`id: `, `event: `, one `data: ` line, a blank line) in a chunk of 4 KiB or more are read by
# one regular expression; anything else, and every chunk of a few bytes, by the loop. Fed whole and byte by byte, the
# same stream must give the same events, whatever odd lines sit between the usual ones.
_usual = b"".join(b'id: %d\ndata: {"type":"delta","text":"w%d"}\n\n' % (i, i) for i in range(1, 120))
_line = st.sampled_from(
    [
        "id: 7", "id: ", "id:7", "id:  7", "id: a\0b", "id: " + "9" * 150, "event: text", "event: ", "event:",
        "event: " + "e" * 150, "data: x", "data:", "data:x", "data:  x", "data: ünï ☃", "data: " + "d" * 600,
        "data", "id", ": comment", "retry: 10", "foo: bar", "", "",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_line, max_size=12), st.lists(_line, max_size=12), st.sampled_from(["\n", "\r\n"]))
def test_usual_runs_read_at_once_give_what_the_loop_gives(before: list[str], after: list[str], ending: str) -> None:
    odd = [(ending.join(lines) + ending).encode() for lines in (before, after)]
    body = (odd[0] + _usual + odd[1] + _usual + odd[0]).replace(b"\n", ending.encode())
    whole = decode(body)
    assert whole == decode(*bytewise(body))
    # Each usual run's first block may take the odd data lines before it into its event.
    assert len([e for e in whole if e.data.startswith('{"type":"delta"')]) >= 2 * 119 - 2


def test_the_last_of_a_repeated_field_counts_in_a_usual_run_too() -> None:
    repeated = b"id: 1\nid: 2\nevent: a\nevent: b\ndata: x\n\n"
    body = _usual + repeated + _usual
    events = decode(body)
    assert events == decode(*bytewise(body))
    assert Event("b", "x", "2") in events


# The cap's verdict on a line does not depend on where the chunks split it: a line held across chunks is dropped only
# once the loop's verdict on it is certain (a data line's event oversized; a comment, an unknown field, or an id or
# event value of the cap's size or more ignored).
_CAP = 64
_near_cap = st.integers(_CAP - 10, _CAP + 10)
_long_line = st.tuples(
    st.sampled_from(["data: ", "data:", ": ", ":", "id: ", "id:", "event: ", "event:", "retry: ", "x-field: ", "data"]),
    _near_cap,
    st.sampled_from(["a", "é", "☃", "\U0001f600"]),
).map(lambda t: t[0] + t[2] * (t[1] // len(t[2].encode())))
_short_line = st.sampled_from(["data: ok", "id: 5", "event: text", "", "", ": keep-alive"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_long_line, _short_line), max_size=10), st.data())
def test_the_cap_gives_the_same_events_wherever_the_chunks_split(lines: list[str], data: st.DataObject) -> None:
    body = ("\n".join(lines) + "\n\n").encode()
    whole = decode(body, max_event_bytes=_CAP)
    assert decode(*bytewise(body), max_event_bytes=_CAP) == whole
    cuts = data.draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=6))
    assert decode(*split_at(body, cuts), max_event_bytes=_CAP) == whole


@pytest.mark.parametrize(
    "body",
    [
        b": " + b"c" * 1100 + b"\ndata: x\n\n",  # a long comment is a comment, split or not
        b"data: " + b"x" * 1020 + b"\n\n",  # within the cap: its "data: " is not counted
        b"event: " + b"e" * 1100 + b"\ndata: x\n\n",  # an event name of the cap's size or more is ignored
    ],
)
def test_a_line_near_or_over_the_cap_split_anywhere(body: bytes) -> None:
    whole = decode(body, max_event_bytes=1024)
    for cut in range(1, len(body)):
        assert decode(body[:cut], body[cut:], max_event_bytes=1024) == whole, cut


def test_an_oversized_event_under_way_is_finished_by_the_loop_before_a_usual_run() -> None:
    # Its data was dropped for size, so only its flag says it is under way: the data line and blank line that end
    # it, at the start of a chunk of usual blocks, belong to it, not to a new event.
    cap = 64 * 1024
    decoder = SSEDecoder(cap)
    assert decoder.feed(b"data: " + b"x" * (cap + 10) + b"\n") == []
    assert decoder.has_partial_event
    rest = b"data: more\n\n" + _usual
    events = decoder.feed(rest)
    assert events[0] == Event("message", "", None, True)
    assert len(events) == 1 + 119
    whole = decode(b"data: " + b"x" * (cap + 10) + b"\n" + rest, max_event_bytes=cap)
    assert events == whole == decode(*bytewise(b"data: " + b"x" * (cap + 10) + b"\n" + rest), max_event_bytes=cap)
