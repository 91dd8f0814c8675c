"""Pure functions: SSE encoding, stream plans, text matching, the Lexi planner's cost bounds."""

from __future__ import annotations

import pytest

from lexey_mcp.sandbox import Fault
from lexey_mcp.sandbox.faults import FaultQueue, plan_stream
from lexey_mcp.sandbox.lexi import answer
from lexey_mcp.sandbox.textmatch import phrase_matches, stem
from lexey_mcp.sandbox.wire import Frame, chunk, encode_frame, split_point, words

ERROR = Frame('{"type":"error","message":"boom"}')


def test_encode_frame() -> None:
    assert encode_frame(Frame("x", event="text", id=3)) == b"id: 3\nevent: text\ndata: x\n\n"
    assert encode_frame(Frame("a\nb")) == b"data: a\ndata: b\n\n"
    assert encode_frame(Frame("x", id=1), line_ending="crlf") == b"id: 1\r\ndata: x\r\n\r\n"
    assert encode_frame(Frame("x"), comments=True) == b": keep-alive\ndata: x\n\n\n"


def test_split_point_prefers_inside_a_multibyte_character() -> None:
    payload = "data: ab€cd\n\n".encode()
    at = split_point(payload)
    with pytest.raises(UnicodeDecodeError):
        payload[:at].decode()
    assert split_point(b"abcd") == 2
    assert chunk(b"ab", "byte") == [b"a", b"b"]
    assert chunk(b"a", "split") == [b"a"]


def test_words_keep_their_following_space() -> None:
    assert words("Hello there,  friend.\nBye") == ["Hello ", "there,  ", "friend.\n", "Bye"]


def test_plan_numbering_gaps_error_and_done() -> None:
    events = [Frame(str(i)) for i in range(5)]
    plan = plan_stream(events, error=ERROR, numbered=True, delay=0, fault=Fault(id_gaps=True, error_at=3))
    ids = [int(e.split(b"\n")[0][4:]) for e in plan.events]
    assert ids == [1, 2, 4, 5, 7]
    assert plan.events[3] == b'id: 5\ndata: {"type":"error","message":"boom"}\n\n'
    assert plan.events[-1] == b"id: 7\ndata: [DONE]\n\n"
    unnumbered = plan_stream(events, error=ERROR, numbered=False, delay=0, fault=None)
    assert unnumbered.events[-1] == b"data: [DONE]\n\n"
    assert len(unnumbered.events) == 6


def test_fault_queue_fifo() -> None:
    queue = FaultQueue()
    queue.push(Fault(target="lexi", times=2, status=500))
    queue.push(Fault(target="customer", status=502))
    taken = queue.take("customer")
    assert taken is not None
    assert taken.status == 502
    assert queue.take("management") is None
    assert [f.status for f, _ in queue.pending()] == [500]
    assert queue.take("lexi") is not None
    assert queue.take("lexi") is not None
    assert queue.take("lexi") is None


def test_stemming_and_phrases() -> None:
    assert stem("refunds") == stem("refund") == stem("refunding")
    assert stem("pricing") == stem("prices") == stem("cost")
    assert phrase_matches("refund requests over $100", "Can I have a refund?")
    assert not phrase_matches("billing disputes", "Where is my bill?")
    assert not phrase_matches("$100", "I paid $100")


def test_lexi_cost_is_one_to_five() -> None:
    everything = {"contact_id": "ct_001", "company_id": "co_001", "deal_id": "dl_001", "matter_id": "mt_001"}
    busy = answer("contacts, companies and deals please", everything, allow_tools=True, history=[])
    assert busy.cost == 5
    assert [t.tool for t in busy.tools] == ["get_contact", "get_company", "get_deal", "get_matter"]
    assert answer("hello", {}, allow_tools=True, history=[]).cost == 1
    assert answer("Who is Maria?", {}, allow_tools=False, history=[]).cost == 1
    acme = answer("Show the Acme deal", {}, allow_tools=True, history=[])
    assert acme.text == "Acme Legal annual retainer: stage negotiation, €48,000 (contact: Maria Rossi)."
