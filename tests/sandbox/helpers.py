"""Small helpers shared by the sandbox tests: keys, URLs, and a strict parser for well-formed LF streams."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx2

from lexey_mcp.sandbox import Sandbox

CUSTOMER = {"Authorization": "Bearer lxc_test_customer"}
MANAGEMENT = {"Authorization": "Bearer lxm_test_management"}
LEXI = {"Authorization": "Bearer wbk_test_lexi"}
HEADERS = {"customer": CUSTOMER, "management": MANAGEMENT}
REQUEST_ID = re.compile(r"req_[0-9a-f]+")
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def conversation(client: httpx2.AsyncClient, sb: Sandbox, kind: str = "customer") -> str:
    response = await client.post(f"{sb.base_url}/{kind}/conversations", headers=HEADERS[kind])
    assert response.status_code == 201
    conversation_id = response.json()["conversationId"]
    assert isinstance(conversation_id, str)
    return conversation_id


async def send(
    client: httpx2.AsyncClient, sb: Sandbox, conversation_id: str, message: str, kind: str = "customer"
) -> httpx2.Response:
    return await client.post(
        f"{sb.base_url}/{kind}/conversations/{conversation_id}/messages",
        headers=HEADERS[kind],
        json={"message": message},
    )


def lexi_url(sb: Sandbox) -> str:
    return f"{sb.lexi_base_url}/v1/lexi/chat/stream"


async def lexi(
    client: httpx2.AsyncClient, sb: Sandbox, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx2.Response:
    return await client.post(lexi_url(sb), headers={**LEXI, **(headers or {})}, json=body)


def events(body: str) -> list[dict[str, str]]:
    """Split an LF-only SSE body into events ({"id"?, "event"?, "data"}), asserting the layout is exact."""
    assert body.endswith("\n\n"), body[-40:]
    parsed = []
    for block in body[:-2].split("\n\n"):
        event: dict[str, str] = {}
        for line in block.split("\n"):
            name, sep, value = line.partition(": ")
            assert sep, line
            assert name in ("id", "event", "data"), line
            assert name not in event, line
            event[name] = value
        assert "data" in event
        parsed.append(event)
    return parsed


def chat_events(body: str) -> list[Any]:
    """The decoded chat payloads in order, asserting ids are 1..N and the stream ends with [DONE]."""
    parsed = events(body)
    assert [e["id"] for e in parsed] == [str(i) for i in range(1, len(parsed) + 1)]
    assert parsed[-1]["data"] == "[DONE]"
    return [json.loads(e["data"]) for e in parsed[:-1]]


def chat_text(body: str) -> str:
    return "".join(e["text"] for e in chat_events(body) if e["type"] == "delta")


def lexi_events(body: str) -> list[tuple[str, Any]]:
    """(event name, payload) pairs, asserting the stream ends with an unnamed `data: [DONE]`."""
    parsed = events(body)
    assert parsed[-1] == {"data": "[DONE]"}
    return [(e["event"], json.loads(e["data"])) for e in parsed[:-1]]


def lexi_text(body: str) -> str:
    return "".join(p["delta"] for name, p in lexi_events(body) if name == "text")
