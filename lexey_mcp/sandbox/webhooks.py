"""The sandbox's outgoing webhooks, shaped and signed as Lexey's: `conversation.escalated` when the customer
agent escalates, each delivery retried with backoff in the background until the receiver answers 2xx."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from types import TracebackType
from typing import Self

import anyio
import httpx2
from anyio.abc import TaskGroup

from .store import Conversation, iso, now

logger = logging.getLogger("lexey_mcp.sandbox")

#: Seconds between attempts; after the last, the delivery is dropped (logged).
BACKOFF = (0.1, 0.3, 1.0, 3.0, 10.0)


def escalated_payload(conversation: Conversation, reason: str, customer: str) -> dict[str, object]:
    return {
        "event": "conversation.escalated",
        "timestamp": iso(conversation.escalated_at or now()),
        "conversation": {
            "id": conversation.id,
            "status": "escalated",
            "customerIdentifier": customer,
            "createdAt": iso(conversation.created_at),
        },
        "messages": [m.as_json() for m in conversation.messages],
        "payload": {"reason": reason},
    }


class WebhookSender:
    """Enter (`async with`) to deliver; `send` queues a delivery and returns at once."""

    def __init__(self, url: str, secret: str | None, backoff: tuple[float, ...] = BACKOFF) -> None:
        self.url = url
        self._secret = secret
        self._backoff = backoff
        self._group: TaskGroup | None = None
        self._http: httpx2.AsyncClient | None = None
        self.delivered = 0
        self.failed = 0

    def send(self, payload: dict[str, object]) -> None:
        if self._group is None:
            logger.warning("sandbox webhook not sent: the sender is not running")
            return
        self._group.start_soon(self._deliver, json.dumps(payload).encode())

    async def _deliver(self, body: bytes) -> None:
        assert self._http is not None
        headers = {"content-type": "application/json", "user-agent": "lexey-sandbox-webhooks"}
        if self._secret is not None:
            digest = hmac.new(self._secret.encode(), body, hashlib.sha256).hexdigest()
            headers["x-lexey-signature"] = f"sha256={digest}"
        for attempt, wait in enumerate((*self._backoff, None), 1):
            try:
                response = await self._http.post(self.url, content=body, headers=headers)
                if response.is_success:
                    self.delivered += 1
                    return
                problem = f"HTTP {response.status_code}"
            except httpx2.HTTPError as exc:
                problem = type(exc).__name__
            if wait is None:
                break
            logger.info("sandbox webhook attempt %d failed (%s); retrying in %gs", attempt, problem, wait)
            await anyio.sleep(wait)
        self.failed += 1
        logger.warning("sandbox webhook to %s dropped after %d attempts (%s)", self.url, attempt, problem)

    async def __aenter__(self) -> Self:
        self._http = httpx2.AsyncClient(trust_env=False, timeout=10)
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        group, self._group = self._group, None
        assert group is not None
        assert self._http is not None
        group.cancel_scope.cancel()  # pending retries end with the sandbox
        try:
            # Not handed what ends the `async with`: the group re-raises an exception it is given, and on Python
            # 3.11 an exit stack that gets back the very exception it passed in makes its `__context__` itself
            # (`contextlib._fix_exception_context`); an enclosing exit stack then loops forever on that chain.
            await group.__aexit__(None, None, None)
        finally:
            await self._http.aclose()
