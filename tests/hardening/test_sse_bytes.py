"""Hostile byte streams, folded at the byte level and over real loopback HTTP one byte per write: same results.

The rule-by-rule unit tests live in tests/test_sse.py and tests/test_streaming.py; this corpus checks that
the whole path (HTTP chunking, decoding, folding) agrees with them, and what each case must produce.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from lexey_mcp.client import LexeyClient
from lexey_mcp.models import ChatResult
from lexey_mcp.sandbox import Fault, Sandbox
from tests.conftest import sandbox_settings_for
from tests.streams import CID, bytewise, settings

pytestmark = pytest.mark.anyio

D = b'data: {"type":"delta","text":"%s"}'
DONE = b"data: [DONE]\n\n"


def delta(text: str, event_id: int | None = None) -> bytes:
    head = b"id: %d\n" % event_id if event_id is not None else b""
    return head + D % text.encode() + b"\n\n"


# name -> (body, expected fields of the result)
CORPUS: dict[str, tuple[bytes, dict[str, Any]]] = {
    "bom": (b"\xef\xbb\xbf" + delta("a", 1) + DONE, {"text": "a", "outcome": "complete", "last_event_id": 1}),
    "crlf": ((delta("a", 1) + DONE).replace(b"\n", b"\r\n"), {"text": "a", "outcome": "complete"}),
    "cr_only": ((delta("a", 1) + DONE).replace(b"\n", b"\r"), {"text": "a", "outcome": "complete"}),
    "lf_crlf": (D % b"a" + b"\n\r\n" + DONE, {"text": "a", "outcome": "complete"}),
    "cr_crlf": (D % b"a" + b"\r\r\n" + DONE, {"text": "a", "outcome": "complete"}),
    "emoji": (delta("🦊 ü 中") + DONE, {"text": "🦊 ü 中", "outcome": "complete"}),
    "line_separators": (
        'data: {"type":"delta","text":"a\u2028b\u0085c\u2029"}\n\n'.encode() + DONE,
        {"text": "a\u2028b\u0085c\u2029", "outcome": "complete"},
    ),
    "multiline_data": (b'data: {"type":"delta",\ndata: "text":"a"}\n\n' + DONE, {"text": "a", "skipped_events": 0}),
    "done_no_space": (delta("a") + b"data:[DONE]\n\n", {"outcome": "complete"}),
    "done_with_suffix": (delta("a") + b"data: [DONE]x\n\n", {"outcome": "partial", "skipped_events": 1}),
    "data_no_value": (b"data\n\n" + delta("a") + DONE, {"text": "a", "skipped_events": 1, "events_received": 2}),
    "field_only_blocks": (
        b"event: x\n\nid: 7\n\nretry: 5\n\n" + delta("a") + DONE,
        {"text": "a", "events_received": 1, "last_event_id": None},
    ),
    "extra_blank_lines": (delta("a") + b"\n\n\n\n" + DONE, {"events_received": 1, "outcome": "complete"}),
    "comments": (b": hi\n:\n" + delta("a") + b": keep-alive\n\n" + DONE, {"text": "a", "events_received": 1}),
    "id_with_nul": (b"id: 1\x002\n" + D % b"a" + b"\n\n" + DONE, {"last_event_id": None, "text": "a"}),
    "bad_retry": (b"retry: -1\nretry: 1e3\n" + delta("a") + DONE, {"text": "a", "outcome": "complete"}),
    "wrong_case_fields": (
        b'DATA: {"type":"delta","text":"x"}\nData: y\n\n' + delta("a") + DONE,
        {"text": "a", "events_received": 1},
    ),
    "invalid_utf8": (b'data: {"type":"delta","text":"a\xffb"}\n\n' + DONE, {"text": "a\ufffdb"}),
    "truncated_final": (
        delta("a", 1) + b'id: 2\ndata: {"type":"delta","text":"b"}',
        {"text": "a", "outcome": "partial", "partial_reason": "ended_without_done"},
    ),
    "schema_violations": (
        b"".join(
            b"data: %s\n\n" % bad
            for bad in (
                b"[1]",
                b'"s"',
                b"{}",
                b'{"type":"delta"}',
                b'{"type":"delta","text":1}',
                b'{"type":"what"}',
                b'{"type":"delta","text":NaN}',
                b"[" * 100_000,
                b'{"type":"delta","text":"z","n":' + b"9" * 10_000 + b"}",
            )
        )
        + delta("a")
        + DONE,
        {"text": "a", "skipped_events": 7, "events_received": 10},
    ),  # {} and "what": ignored
    "status_then_text": (
        delta("a", 1) + b'id: 2\ndata: {"type":"status","status":"escalated"}\n\n' + delta("b", 3) + DONE,
        {"text": "ab", "conversation_status": "escalated", "status_events": ["escalated"]},
    ),
    "after_done": (delta("a") + DONE + delta("b"), {"text": "a", "events_received": 1}),
    "gaps_repeats_regressions": (
        delta("a", 2) + delta("b", 2) + delta("c", 5) + delta("d", 1) + DONE,
        {"missing_event_ids": [3, 4], "last_event_id": 5, "text": "abcd"},
    ),
}


async def fold_in_memory(body: bytes) -> ChatResult:
    def respond(request: httpx2.Request) -> httpx2.Response:
        async def chunks() -> AsyncIterator[bytes]:
            for chunk in bytewise(body):
                yield chunk

        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=chunks())

    async with LexeyClient(settings(), transport=httpx2.MockTransport(respond)) as c:
        return await c.customer.send_message(CID, "hi")


@pytest.mark.parametrize("name", sorted(CORPUS))
async def test_corpus_case(name: str, sandbox: Sandbox) -> None:
    body, expected = CORPUS[name]
    in_memory = await fold_in_memory(body)
    async with LexeyClient(sandbox_settings_for(sandbox), trust_env=False) as c:
        cid = await c.customer.create_conversation()
        sandbox.inject(Fault(target="customer", raw_chunks=bytewise(body) if len(body) < 20_000 else [body]))
        over_http = await c.customer.send_message(cid, "hi")
    assert {k: getattr(in_memory, k) for k in expected} == expected
    ignore = {"conversation_id", "request_id"}
    assert over_http.model_dump(exclude=ignore) == in_memory.model_dump(exclude=ignore)
