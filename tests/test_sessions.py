"""Past the session cap, the least recently used idle session gives way to a new client (it was 503 for every new
client for as long as 10,000 sessions idled)."""

from __future__ import annotations

import httpx2
import pytest

from lexey_mcp.http_transport import guard_mcp_endpoint
from lexey_mcp.paths import MCP_PATH
from lexey_mcp.sandbox import Sandbox
from lexey_mcp.server import ServerOptions, build_server
from tests.conftest import sandbox_settings_for
from tests.jsonrpc import MCP_HEADERS, initialize
from tests.oauth_issuer import RESOURCE_URL, serve_issuer

pytestmark = pytest.mark.anyio

INITIALIZE = initialize()
PING = {"jsonrpc": "2.0", "id": 2, "method": "ping"}


async def test_the_least_recently_used_idle_session_gives_way(sandbox: Sandbox) -> None:
    settings = sandbox_settings_for(sandbox)
    app = build_server(settings).streamable_http_app(streamable_http_path=MCP_PATH, max_sessions=2)
    guard_mcp_endpoint(app, settings)
    transport = httpx2.ASGITransport(app)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", timeout=30) as http,
    ):

        async def open_session() -> str:
            opened = await http.post(MCP_PATH, json=INITIALIZE, headers=MCP_HEADERS)
            assert opened.status_code == 200
            return opened.headers["mcp-session-id"]

        async def ping(session: str) -> int:
            headers = {**MCP_HEADERS, "Mcp-Session-Id": session, "Mcp-Protocol-Version": "2025-06-18"}
            return (await http.post(MCP_PATH, json=PING, headers=headers)).status_code

        first, second = await open_session(), await open_session()
        assert await ping(first) == 200  # the first is now the more recently used
        third = await open_session()  # at the cap of 2: the second, idle longest, gives way
        assert await ping(first) == 200
        assert await ping(third) == 200
        assert await ping(second) == 404


async def test_under_oauth_a_callers_own_idle_session_gives_way_first(sandbox: Sandbox) -> None:
    with serve_issuer() as issuer:
        settings = sandbox_settings_for(sandbox, oauth_issuer=issuer.url, resource_url=RESOURCE_URL)
        app = build_server(settings, ServerOptions(oauth=True)).streamable_http_app(
            streamable_http_path=MCP_PATH, max_sessions=2
        )
        guard_mcp_endpoint(app, settings)
        transport = httpx2.ASGITransport(app)
        alice = {"Authorization": f"Bearer {issuer.token(sub='alice')}"}
        bob = {"Authorization": f"Bearer {issuer.token(sub='bob')}"}
        async with (
            app.router.lifespan_context(app),
            httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", timeout=30) as http,
        ):

            async def open_session(who: dict[str, str]) -> str:
                opened = await http.post(MCP_PATH, json=INITIALIZE, headers={**MCP_HEADERS, **who})
                assert opened.status_code == 200
                return opened.headers["mcp-session-id"]

            async def ping(who: dict[str, str], session: str) -> int:
                headers = {**MCP_HEADERS, **who, "Mcp-Session-Id": session, "Mcp-Protocol-Version": "2025-06-18"}
                return (await http.post(MCP_PATH, json=PING, headers=headers)).status_code

            bobs = await open_session(bob)  # idle longest
            alices_first = await open_session(alice)
            alices_second = await open_session(alice)  # at the cap: Alice's own idle session gives way, not Bob's
            assert await ping(bob, bobs) == 200
            assert await ping(alice, alices_second) == 200
            assert await ping(alice, alices_first) == 404
