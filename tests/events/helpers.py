"""Webhook bodies and posting for the events tests."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2

from lexey_mcp.events.receiver import sign

SECRET = "whsec-test-0123456789abcdef"
BASE_TIME = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def escalation(
    conversation_id: str | None = None, *, minutes: int = 0, reason: str = "Refund over $100"
) -> dict[str, Any]:
    cid = conversation_id or str(uuid.uuid4())
    when = (BASE_TIME + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    return {
        "event": "conversation.escalated",
        "timestamp": when,
        "conversation": {
            "id": cid,
            "status": "escalated",
            "customerIdentifier": "ada@example.com",
            "createdAt": "2026-11-30T08:55:00Z",
        },
        "messages": [{"role": "user", "content": f"message {i}", "createdAt": when} for i in range(7)],
        "payload": {"reason": reason},
    }


def body_of(payload: object) -> bytes:
    return json.dumps(payload).encode()


async def post(
    http: httpx2.AsyncClient,
    url: str,
    body: bytes,
    *,
    secret: str = SECRET,
    signature: str | None = None,
    sign_it: bool = True,
) -> httpx2.Response:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-lexey-signature"] = signature
    elif sign_it:
        headers["x-lexey-signature"] = sign(secret, body)
    return await http.post(url, content=body, headers=headers)
