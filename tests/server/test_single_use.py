"""2026-07-28 confirmations are single use: the round carrying the user's answer (`requestState`), sent again, is
refused and nothing more is sent upstream; across replicas too, when they share Redis."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from lexey_mcp.sandbox import Sandbox
from lexey_mcp.server.single_use import REUSED
from tests.processes import http_server
from tests.redis_server import redis_server
from tests.server.test_rendering import INSTRUCTION, Answers

pytestmark = pytest.mark.anyio


class Recorder(httpx2.AsyncBaseTransport):
    """Passes requests on (the round carrying `requestState` to `answered_on`, when set) and keeps that round."""

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self.answered_on: int | None = None
        self.answer: tuple[bytes, dict[str, str]] | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if b"requestState" in request.content:
            self.answer = (request.content, dict(request.headers))
            if self.answered_on is not None:
                request.url = request.url.copy_with(port=self.answered_on)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _confirm_then_replay(sandbox: Sandbox, first: str, replay_to: str, answered_on: str) -> tuple[int, str]:
    """configure_org confirmed through `first` (the answer sent to `answered_on`), then the very same answer posted
    again to `replay_to`: what it sent upstream the first time, and the replay's answer."""
    recorder = Recorder()
    recorder.answered_on = httpx2.URL(answered_on).port
    async with (
        httpx2.AsyncClient(transport=recorder, trust_env=False, timeout=30) as http,
        Client(streamable_http_client(first, http_client=http), elicitation_callback=Answers("accept")) as client,
    ):
        before = sandbox.stats.requests
        accepted = await client.call_tool("configure_org", {"instruction": INSTRUCTION})
        sent = sandbox.stats.requests - before
    assert not accepted.is_error
    assert recorder.answer is not None
    content, headers = recorder.answer
    headers.pop("host", None)
    headers.pop("content-length", None)
    before = sandbox.stats.requests
    async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        replayed = await http.post(replay_to, content=content, headers=headers)
    assert sandbox.stats.requests == before  # nothing sent the second time
    return sent, replayed.text


@pytest.mark.e2e
async def test_a_confirmation_is_used_once(sandbox: Sandbox, tmp_path: Path) -> None:
    async with http_server(sandbox, tmp_path, "--confirm-changes") as server:
        sent, replayed = await _confirm_then_replay(sandbox, server.url, server.url, server.url)
    assert sent == 2  # the management conversation and its message
    assert REUSED in replayed


@pytest.mark.e2e
async def test_a_confirmation_is_used_once_across_replicas_sharing_redis(sandbox: Sandbox, tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        shared = {"LEXEY_MCP_STATE_KEY": "k" * 40, "LEXEY_REDIS_URL": redis.url}
        flags = ("--stateless", "--confirm-changes")
        async with (
            http_server(sandbox, tmp_path, *flags, **shared) as one,
            http_server(sandbox, tmp_path, *flags, **shared) as two,
        ):
            # Asked on one, answered on two, the answer replayed to one.
            sent, replayed = await _confirm_then_replay(sandbox, one.url, one.url, two.url)
    assert sent == 2
    assert REUSED in replayed
