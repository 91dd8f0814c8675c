"""`list_escalations` as the model reads it: the feed off (and how to turn it on) apart from none yet, the total and
whether more exist, each escalation's messages; and a state directory that cannot be used, said at once."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.types import CallToolResult

from lexey_mcp.events.feed import EventOptions, state_dir_problem
from lexey_mcp.paths import MCP_PATH, READY_PATH, WEBHOOK_PATH
from lexey_mcp.server import ServerOptions, build_server
from tests.events.conftest import events_settings
from tests.events.helpers import body_of, escalation, post
from tests.processes import free_port
from tests.reading import text_of

pytestmark = pytest.mark.anyio

OFF_NO_SECRET = (
    "No escalations. This server receives none: LEXEY_WEBHOOK_SECRET is not set. To receive escalations, set it to "
    "the secret in Lexey's webhook settings, start lexey-mcp with --webhook-port PORT and give Lexey this server's "
    "URL ending in /webhooks/lexey."
)
OFF_NO_PORT = (
    "LEXEY_WEBHOOK_SECRET is set, but over stdio webhooks need a port of their own: start lexey-mcp with "
    "--webhook-port PORT (for example --webhook-port 8787)."
)


async def listed(settings_dir: Path, options: EventOptions, **overrides: object) -> CallToolResult:
    server = build_server(
        events_settings(settings_dir, **overrides), ServerOptions(toolsets=["events"], events=options)
    )
    async with Client(server) as client:
        result = await client.call_tool("list_escalations", {})
    assert not result.is_error
    return result


async def test_without_a_secret_the_feed_is_off_and_says_how_to_turn_it_on(tmp_path: Path) -> None:
    result = await listed(tmp_path, EventOptions(), webhook_secret=None)
    assert text_of(result) == OFF_NO_SECRET
    assert result.structured_content == {"escalations": [], "not_receiving": OFF_NO_SECRET.split(": ", 1)[1]}


async def test_over_http_the_way_in_is_the_mcp_port(tmp_path: Path) -> None:
    result = await listed(
        tmp_path, EventOptions(public_url="http://127.0.0.1:8000/webhooks/lexey"), webhook_secret=None
    )
    assert "--webhook-port" not in text_of(result)
    assert text_of(result).endswith(
        "set it to the secret in Lexey's webhook settings and give Lexey this server's URL ending in /webhooks/lexey."
    )


async def test_a_secret_over_stdio_without_a_port_announces_no_listener(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing announces a listener that is not listening: no "webhook receiver on", and the tool says why."""
    caplog.set_level("INFO", "lexey_mcp.events")
    result = await listed(tmp_path, EventOptions())
    assert text_of(result) == f"No escalations. This server receives none: {OFF_NO_PORT}"
    assert "webhook receiver on" not in caplog.text
    assert f"webhook receiver off: {OFF_NO_PORT}" in caplog.messages


async def test_a_listening_feed_with_nothing_yet_says_none_yet(tmp_path: Path) -> None:
    result = await listed(tmp_path, EventOptions(webhook_port=0))
    assert text_of(result) == "No escalations yet."
    assert result.structured_content == {"escalations": []}


async def test_the_total_whether_more_exist_and_each_customers_messages(tmp_path: Path) -> None:
    port = free_port()
    server = build_server(
        events_settings(tmp_path), ServerOptions(toolsets=["events"], events=EventOptions(webhook_port=port))
    )
    payloads = [escalation(minutes=minutes, reason=f"rule {minutes}") for minutes in (1, 2, 3)]
    async with Client(server) as client, httpx2.AsyncClient(trust_env=False, timeout=10) as http:
        for payload in payloads:
            response = await post(http, f"http://127.0.0.1:{port}{WEBHOOK_PATH}", body_of(payload))
            assert response.status_code == 200
        some = await client.call_tool("list_escalations", {"limit": 2})
        every = await client.call_tool("list_escalations", {})
    assert not some.is_error
    assert not every.is_error
    assert some.structured_content is not None
    assert (some.structured_content["total"], some.structured_content["more"]) == (3, True)
    assert "not_receiving" not in some.structured_content
    assert [e["reason"] for e in some.structured_content["escalations"]] == ["rule 3", "rule 2"]
    lines = text_of(some).splitlines()
    assert lines[0] == "2 of 3 escalations, newest first; more with a larger limit."
    newest = payloads[2]
    assert lines[1] == (f"[{newest['timestamp']} {newest['conversation']['id']}: rule 3 (ada@example.com)]")
    # The webhook's last five messages, quoted as the customer's words.
    assert lines[2].startswith("<<<reply ")
    assert lines[3:8] == [f"user: message {i}" for i in range(2, 7)]
    assert lines[8].startswith("<<<end reply ")
    assert every.structured_content is not None
    assert (every.structured_content["total"], "more" in every.structured_content) == (3, False)
    assert text_of(every).splitlines()[0] == "3 of 3 escalations, newest first."


async def test_an_unusable_state_directory_is_said_at_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Not "webhook receiver on" with every webhook then answered 503: start-up refuses it (the CLI exits 2 with
    this message), /readyz says why, and the receiver stays off."""
    caplog.set_level("INFO", "lexey_mcp.events")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    settings = events_settings(blocked)
    problem = state_dir_problem(settings)
    assert problem == (
        "LEXEY_STATE_DIR cannot hold the escalation feed's events: it is a file, not a directory. Set it to a "
        "directory this user can write; for example LEXEY_STATE_DIR=~/.local/state/lexey-mcp (the default)."
    )
    assert state_dir_problem(events_settings(Path("/proc/nope"))) == problem.replace(
        "it is a file, not a directory", "it cannot be created (No such file or directory)"
    )
    server = build_server(settings, ServerOptions(toolsets=["events"], events=EventOptions(webhook_port=0)))
    app = server.streamable_http_app(streamable_http_path=MCP_PATH)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url="http://127.0.0.1:8000") as http:
        ready = await http.get(READY_PATH)
    assert (ready.status_code, ready.json()) == (503, {"status": "not ready", "problems": [f"events: {problem}"]})
    async with Client(server) as client:
        result = await client.call_tool("list_escalations", {})
    assert result.is_error  # the store cannot be read: said, not an empty list
    assert "webhook receiver on" not in caplog.text
    assert any(m.startswith("webhook receiver off: the event store") for m in caplog.messages)
