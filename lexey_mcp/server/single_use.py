"""2026-07-28 confirmations are single use: a sealed `requestState` (the round that carries the user's answer) is
accepted once. Sent again, with the same answer or another, it is refused before the tool runs, so one "yes" sends
one instruction. Across replicas the claim is made in Redis (LEXEY_REDIS_URL), else in this process.

Two server middlewares around the SDK's `RequestStateBoundary`: the outer one notes the sealed state as it arrives
(the boundary replaces it with its plaintext, which need not be unique), the inner one claims it once the boundary
has verified it, so only states this service minted are remembered, each for as long as it could be used.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from mcp.server import MCPServer, ServerRequestContext
from mcp.server.context import CallNext
from mcp.server.request_state import RequestStateBoundary
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

#: How long a sealed state can be used: the SDK's default request-state TTL, which this server keeps.
STATE_SECONDS = 600.0
#: Claims held in memory before expired ones are swept out.
_SWEEP_AT = 10_000
REUSED = "This requestState was already answered: each confirmation is used once. Call the tool again to be asked anew."

_arriving: ContextVar[str | None] = ContextVar("lexey_mcp_arriving_request_state", default=None)


class Claims:
    """Each sealed state, claimed at most once while it can be used: in Redis when given a way to its client (made
    on first use, as LEXEY_REDIS_URL's problems are reported then), else here."""

    def __init__(self, redis: Callable[[], Any] | None = None, prefix: str = "lexey-mcp:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._local: dict[str, float] = {}  # digest -> when the claim may be forgotten

    async def claim(self, state: str) -> bool:
        """True the first time `state` is claimed, False after."""
        digest = hashlib.sha256(state.encode()).hexdigest()
        if self._redis is not None:
            key = f"{self._prefix}request-state:{digest}"
            return bool(await self._redis().set(key, b"1", nx=True, px=math.ceil(STATE_SECONDS * 1000)))
        now = time.monotonic()
        if self._local.get(digest, -math.inf) > now:
            return False
        if len(self._local) >= _SWEEP_AT:
            self._local = {d: until for d, until in self._local.items() if until > now}
        self._local[digest] = now + STATE_SECONDS
        return True


def install(server: MCPServer[Any], claims: Claims) -> None:
    """Make `server`'s sealed request states single use."""

    async def note(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        state = (ctx.params or {}).get("requestState")
        token = _arriving.set(state if isinstance(state, str) else None)
        try:
            return await call_next(ctx)
        finally:
            _arriving.reset(token)

    async def claim(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        state = _arriving.get()
        if state is not None and not await claims.claim(state):
            raise MCPError(code=INVALID_PARAMS, message=REUSED)
        return await call_next(ctx)

    chain = server.middleware  # the SDK's own list, where its boundary sits
    boundary = next(i for i, m in enumerate(chain) if isinstance(m, RequestStateBoundary))
    chain.insert(boundary + 1, claim)
    chain.insert(boundary, note)
