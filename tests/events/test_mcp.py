"""The events surface through `mcp.Client`: both subscription eras in-process and over streamable HTTP, the
tool, the resource, announcements after customer messages, and the sandbox's own webhooks."""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, MCPError, types
from mcp.client.streamable_http import streamable_http_client
from mcp.server import MCPServer
from mcp.shared.subscriptions import ResourceUpdated

from lexey_mcp.events.bus import MAX_LEGACY_SUBSCRIPTIONS
from lexey_mcp.events.feed import EventFeed, EventOptions
from lexey_mcp.events.surface import install
from lexey_mcp.paths import MCP_PATH, WEBHOOK_PATH
from lexey_mcp.sandbox import Sandbox
from lexey_mcp.server import ServerOptions, build_server
from tests.conftest import sandbox_settings_for
from tests.events.conftest import events_settings
from tests.events.helpers import SECRET, body_of, escalation, post
from tests.processes import free_port, http_server, mcp_client

ESCALATIONS = "lexey://escalations"
WAIT = 30.0  # generous: a deadline for deliveries on a loaded machine, not a speed


class LegacyInbox:
    """`notifications/resources/updated` URIs a legacy client received."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self.arrived = anyio.Event()

    async def __call__(self, message: Any) -> None:
        message = getattr(message, "root", message)
        if isinstance(message, types.ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))
            self.arrived.set()

    async def wait_for(self, count: int) -> list[str]:
        with anyio.fail_after(WAIT):
            while len(self.uris) < count:
                self.arrived = anyio.Event()
                await self.arrived.wait()
        return self.uris


async def subscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated for 2026-07-28; exactly what a 2025 client does
        await client.subscribe_resource(uri)


@asynccontextmanager
async def webhooks() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        yield http


async def test_modern_listen_hears_a_new_escalation(tmp_path: Path, anyio_backend: str) -> None:
    port = free_port()
    server = build_server(events_settings(tmp_path), ServerOptions(events=EventOptions(webhook_port=port)))
    payload = escalation()
    cid = payload["conversation"]["id"]
    async with Client(server) as client, webhooks() as http:
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe
        uris = [ESCALATIONS, f"lexey://conversations/{cid}/messages"]
        async with client.listen(resource_subscriptions=uris) as sub:
            response = await post(http, f"http://127.0.0.1:{port}{WEBHOOK_PATH}", body_of(payload))
            assert response.status_code == 200
            heard = []
            with anyio.fail_after(WAIT):
                async for event in sub:
                    heard.append(event)
                    if len(heard) == 2:
                        break
        assert heard == [ResourceUpdated(uri=u) for u in uris]
        result = await client.call_tool("list_escalations", {})
        resource = await client.read_resource(ESCALATIONS)
    assert not result.is_error
    assert result.structured_content is not None
    [listed] = result.structured_content["escalations"]
    assert (listed["conversation_id"], listed["reason"]) == (cid, "Refund over $100")
    content = resource.contents[0]
    assert content.mime_type == "application/json"
    assert json.loads(getattr(content, "text", "")) == result.structured_content


async def test_legacy_subscribe_hears_only_what_it_subscribed_to(tmp_path: Path, anyio_backend: str) -> None:
    port = free_port()
    server = build_server(events_settings(tmp_path), ServerOptions(events=EventOptions(webhook_port=port)))
    inbox = LegacyInbox()
    first, second = escalation(), escalation()
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    async with Client(server, mode="legacy", message_handler=inbox) as client, webhooks() as http:
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe  # true now: resources/subscribe is served
        await subscribe(client, f"lexey://conversations/{second['conversation']['id']}/messages")
        assert (await post(http, url, body_of(first))).status_code == 200
        assert (await post(http, url, body_of(second))).status_code == 200
        assert await inbox.wait_for(1) == [f"lexey://conversations/{second['conversation']['id']}/messages"]
        await subscribe(client, ESCALATIONS)
        assert (await post(http, url, body_of(escalation()))).status_code == 200
        assert (await inbox.wait_for(2))[1] == ESCALATIONS
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await client.unsubscribe_resource(ESCALATIONS)
        assert (await post(http, url, body_of(escalation()))).status_code == 200
        await client.list_tools()  # a round trip: a notification sent before it would have arrived by now
    assert len(inbox.uris) == 2


async def test_a_customer_message_announces_its_conversation(
    sandbox: Sandbox, tmp_path: Path, anyio_backend: str
) -> None:
    settings = sandbox_settings_for(sandbox, state_dir=tmp_path)
    inbox = LegacyInbox()
    async with Client(build_server(settings), mode="legacy", message_handler=inbox) as legacy:
        async with Client(build_server(settings)) as client:
            created = await client.call_tool("create_conversation", {})
            assert created.structured_content is not None
            cid = created.structured_content["conversation_id"]
            uri = f"lexey://conversations/{cid}/messages"
            async with client.listen(resource_subscriptions=[uri]) as sub:
                sent = await client.call_tool("send_customer_message", {"message": "Hi", "conversation_id": cid})
                assert not sent.is_error
                with anyio.fail_after(WAIT):
                    event = await sub.__anext__()
            assert event == ResourceUpdated(uri=uri)
        await subscribe(legacy, uri)
        await legacy.call_tool("send_customer_message", {"message": "Again", "conversation_id": cid})
        assert await inbox.wait_for(1) == [uri]


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [({"limit": 0}, "limit must be at least 1; it is 0."), ({"since": "yesterday"}, "ISO 8601")],
)
async def test_list_escalations_refuses_bad_input_clearly(
    tmp_path: Path, anyio_backend: str, arguments: dict[str, Any], fragment: str
) -> None:
    async with Client(build_server(events_settings(tmp_path))) as client:
        result = await client.call_tool("list_escalations", arguments)
    assert result.is_error
    text = getattr(result.content[0], "text", "")
    assert fragment in text
    assert "validation error" not in text


async def test_the_sandbox_escalation_arrives_as_an_event(anyio_backend: str) -> None:
    """`--sandbox`: the sandbox signs its webhooks with a generated secret and posts them to this server's
    own receiver (a free loopback port), so the feed works with no setup."""
    from lexey_mcp.config import Settings

    server = build_server(Settings(_env_file=None), ServerOptions(sandbox=True, sandbox_delay=0))
    async with Client(server) as client, client.listen(resource_subscriptions=[ESCALATIONS]) as sub:
        await client.call_tool("configure_org", {"instruction": "Always escalate if a customer mentions refunds."})
        scenario = await client.call_tool("run_customer_scenario", {"messages": ["Hi", "I want a refund now"]})
        assert scenario.structured_content is not None
        assert scenario.structured_content["escalated"]
        with anyio.fail_after(WAIT):
            event = await sub.__anext__()
        assert event == ResourceUpdated(uri=ESCALATIONS)
        result = await client.call_tool("list_escalations", {})
    assert result.structured_content is not None
    [escalated] = result.structured_content["escalations"]
    assert escalated["conversation_id"] == scenario.structured_content["conversation_id"]
    assert escalated["reason"] == "The customer mentioned refunds"
    assert escalated["status"] == "escalated"
    assert [m["role"] for m in escalated["messages"]] == ["user", "assistant", "user", "assistant"]


@pytest.mark.e2e
async def test_both_eras_over_streamable_http_and_no_bearer_on_the_webhook(
    sandbox: Sandbox, tmp_path: Path, anyio_backend: str
) -> None:
    token = "t0ken-for-mcp-requests-only"
    env = {"LEXEY_WEBHOOK_SECRET": SECRET, "LEXEY_STATE_DIR": str(tmp_path / "state"), "LEXEY_MCP_AUTH_TOKEN": token}
    inbox = LegacyInbox()
    auth = {"Authorization": f"Bearer {token}"}
    async with http_server(sandbox, tmp_path, **env) as server:
        webhook_url = server.url.removesuffix(MCP_PATH) + WEBHOOK_PATH
        async with (
            mcp_client(server.url, headers=auth) as modern,
            httpx2.AsyncClient(trust_env=False, timeout=30, headers=auth) as legacy_http,
            Client(
                streamable_http_client(server.url, http_client=legacy_http), mode="legacy", message_handler=inbox
            ) as legacy,
            webhooks() as http,
        ):
            await subscribe(legacy, ESCALATIONS)  # its notifications come over its standing GET stream
            async with modern.listen(resource_subscriptions=[ESCALATIONS]) as sub:
                response = await post(http, webhook_url, body_of(escalation()))  # no bearer token: the signature
                assert response.status_code == 200
                with anyio.fail_after(WAIT):
                    event = await sub.__anext__()
            assert event == ResourceUpdated(uri=ESCALATIONS)
            assert await inbox.wait_for(1) == [ESCALATIONS]
            refused = await post(http, webhook_url, body_of(escalation()), secret="not-the-secret")
            assert refused.status_code == 401
    assert SECRET not in server.stderr()


@pytest.mark.e2e
async def test_http_without_a_secret_answers_404(sandbox: Sandbox, tmp_path: Path, anyio_backend: str) -> None:
    env = {"LEXEY_STATE_DIR": str(tmp_path / "state"), "LEXEY_LOG_LEVEL": "INFO"}
    async with http_server(sandbox, tmp_path, **env) as server, webhooks() as http:
        webhook_url = server.url.removesuffix(MCP_PATH) + WEBHOOK_PATH
        response = await post(http, webhook_url, body_of(escalation()))
    assert response.status_code == 404
    assert "webhook receiver off" in server.stderr()


async def test_only_what_works_is_advertised(tmp_path: Path, sandbox: Sandbox, anyio_backend: str) -> None:
    settings = sandbox_settings_for(sandbox, state_dir=tmp_path)
    stateless = build_server(settings, ServerOptions(events=EventOptions(sessions=False)))  # as --stateless builds it
    async with Client(stateless, mode="legacy") as legacy, Client(stateless) as modern:
        assert legacy.server_capabilities.resources is not None
        assert not legacy.server_capabilities.resources.subscribe  # no session to notify later
        assert modern.server_capabilities.resources is not None
        assert modern.server_capabilities.resources.subscribe  # listen streams work without sessions
    without_events = build_server(settings, ServerOptions(toolsets=["customer"]))
    for mode in ("legacy", "auto"):
        async with Client(without_events, mode=mode) as client:
            assert client.server_capabilities.resources is not None
            assert not client.server_capabilities.resources.subscribe  # nothing would ever be announced


async def test_a_closed_legacy_client_is_forgotten(tmp_path: Path, anyio_backend: str) -> None:
    feed = EventFeed(events_settings(tmp_path))
    server: MCPServer[Any] = MCPServer("events", subscriptions=feed.bus)
    install(server, feed, ())
    async with feed:
        for _ in range(3):
            async with Client(server, mode="legacy") as client:
                await subscribe(client, ESCALATIONS)
                await subscribe(client, f"lexey://conversations/{uuid.UUID(int=1)}/messages")
                assert len(feed.legacy) == 1
        assert len(feed.legacy) == 0


async def test_legacy_subscribe_takes_only_served_uris_and_at_most_its_cap(tmp_path: Path, anyio_backend: str) -> None:
    # Any URI was accepted: 400 subscriptions with 1 MB URIs took RSS from 71 to 458 MiB.
    server = build_server(events_settings(tmp_path), ServerOptions(events=EventOptions(webhook_port=free_port())))
    async with Client(server, mode="legacy") as client:
        for uri in ["lexey://" + "x" * 100_000, "https://example.com/", "lexey://conversations/not-a-uuid/messages"]:
            with pytest.raises(MCPError, match=r"^Only lexey://escalations and lexey://conversations/"):
                await subscribe(client, uri)
        await subscribe(client, ESCALATIONS)
        for n in range(MAX_LEGACY_SUBSCRIPTIONS - 1):
            await subscribe(client, f"lexey://conversations/{uuid.UUID(int=n)}/messages")
        await subscribe(client, ESCALATIONS)  # again: already held, not one more
        with pytest.raises(MCPError, match=f"already has {MAX_LEGACY_SUBSCRIPTIONS} subscriptions"):
            await subscribe(client, f"lexey://conversations/{uuid.UUID(int=10**6)}/messages")
