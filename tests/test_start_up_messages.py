"""What a user sees at start-up: every refused setting with a value it accepts, a state directory that cannot be
used, no listener announced that is not listening, and `--sandbox` where a command means it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lexey_mcp.cli import main
from lexey_mcp.config import Settings, describe_settings_error
from tests.events.helpers import SECRET
from tests.processes import SERVER, clean_env

#: A value each refusable setting refuses. Keys, secrets and tokens are any text by design (a bad key disables only
#: its tools, checked when used); LEXEY_STATE_DIR is any path, checked at start-up (below).
REFUSED = {
    "base_url": "ftp://lexey.example",
    "lexi_base_url": "lexi.example",
    "oauth_issuer": "idp.test",
    "oauth_jwks_url": "login.example.com/keys",
    "resource_url": "mcp.test/mcp",
    "log_level": "loud",
    "connect_timeout": "-7",
    "read_timeout": "soon",
    "stream_timeout": "-1",
    "max_event_bytes": "12",
    "max_reply_chars": "lots",
    "max_retries": "11",
    "max_retry_wait": "-1",
    "max_result_chars": "999",
    "confirm_changes": "maybe",
    "read_only": "maybe",
    "event_store_max_mb": "-7",
    "redis_namespace": "shop eu/1",
    "state_key": "short",
    "header_timeout": "-7",
    "max_concurrency": "-7",
    "keep_alive": "-7",
    "session_idle_minutes": "-7",
    "max_line_bytes": "1023",
    "max_in_flight": "-7",
    "event_retention_days": "-7",
    "redis_url": "http://127.0.0.1:6379/0",
    "rate_limit": "60 per min",
    "max_concurrent_streams": "-7",
    "stream_slot_wait": "-7",
    "log_format": "xml",
}
ANY_TEXT = {"customer_key", "management_key", "lexi_api_key", "webhook_secret", "metrics_token", "state_dir"}


def test_every_refusable_setting_is_covered() -> None:
    assert set(REFUSED) | ANY_TEXT | {"auth_token"} == set(Settings.model_fields)


@pytest.mark.parametrize("field", sorted(REFUSED))
def test_a_refused_setting_shows_a_value_it_accepts(field: str) -> None:
    refused_value: dict[str, Any] = {field: REFUSED[field]}
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, **refused_value)
    [line] = describe_settings_error(refused.value).splitlines()
    variable = line.split(" ", 1)[0]
    assert variable.startswith(("LEXEY_", "LEXI_"))
    assert REFUSED[field] not in line
    if " must be one of " in line:  # the accepted values, every one
        listed = line.split(" must be one of ", 1)[1].rstrip(".").replace(" or ", ", ").split(", ")
        example = listed[0].strip("'")
    else:
        assert f"; for example {variable}=" in line
        example = line.split(f"; for example {variable}=", 1)[1].removesuffix(".")
    if example.startswith('"$('):  # a command that prints an accepted value
        example = "x" * 43
    shown: dict[str, Any] = {field: example}
    Settings(_env_file=None, **shown)  # what the message shows is accepted


def test_the_rate_limit_message_says_the_accepted_forms() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, rate_limit="60/min")
    assert describe_settings_error(refused.value) == (
        "LEXEY_MCP_RATE_LIMIT must be a count of calls per second, minute or hour: N/second, N/minute or N/hour; "
        "for example LEXEY_MCP_RATE_LIMIT=60/minute."
    )
    for accepted in ("60/minute", " 5 / second ", "1000/hour"):
        assert Settings(_env_file=None, rate_limit=accepted).rate_limit == accepted


def test_a_state_directory_that_cannot_be_used_stops_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("LEXEY_STATE_DIR", "/proc/nope")
    assert main([]) == 2
    assert capsys.readouterr().err == (
        "lexey-mcp: LEXEY_STATE_DIR cannot hold the escalation feed's events: it cannot be created (No such file or "
        "directory). Set it to a directory this user can write; for example "
        "LEXEY_STATE_DIR=~/.local/state/lexey-mcp (the default).\n"
    )
    # The default too, when the feed is on (a webhook secret is set) and would keep its events there.
    monkeypatch.delenv("LEXEY_STATE_DIR")
    monkeypatch.setenv("HOME", "/proc/nope")
    monkeypatch.setenv("LEXEY_WEBHOOK_SECRET", SECRET)
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("lexey-mcp: LEXEY_STATE_DIR cannot hold the escalation feed's events")


def test_the_demo_takes_sandbox_before_or_after_it(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo always runs against the embedded sandbox: asking for it is what the user means."""
    assert main(["demo", "--sandbox", "--delay", "0"]) == 0
    assert "escalated: yes; every reply complete: yes" in capsys.readouterr().out
    assert main(["--sandbox", "demo", "--delay", "0"]) == 0
    assert "escalated: yes; every reply complete: yes" in capsys.readouterr().out


def _rpc(*messages: dict[str, Any]) -> str:
    return "".join(json.dumps({"jsonrpc": "2.0", **m}) + "\n" for m in messages)


@pytest.mark.e2e
def test_over_stdio_a_webhook_secret_without_a_port_announces_no_receiver(tmp_path: Path) -> None:
    env = clean_env(LEXEY_WEBHOOK_SECRET=SECRET, LEXEY_STATE_DIR=str(tmp_path), LEXEY_LOG_LEVEL="INFO")
    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    with subprocess.Popen(
        SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as server:
        assert server.stdin is not None
        assert server.stdout is not None
        server.stdin.write(
            _rpc(
                {"id": 1, "method": "initialize", "params": hello},
                {"method": "notifications/initialized"},
                {"id": 2, "method": "tools/call", "params": {"name": "list_escalations", "arguments": {}}},
            )
        )
        server.stdin.flush()
        answers = [json.loads(server.stdout.readline()) for _ in range(2)]
        server.stdin.close()
        assert server.wait(timeout=30) == 0
        assert server.stderr is not None
        stderr = server.stderr.read()
    listed = next(a for a in answers if a.get("id") == 2)["result"]
    assert listed["content"][0]["text"].startswith("No escalations. This server receives none: LEXEY_WEBHOOK_SECRET")
    assert "webhook receiver on" not in stderr
    assert (
        "webhook receiver off: LEXEY_WEBHOOK_SECRET is set, but over stdio webhooks need a port of their own: start "
        "lexey-mcp with --webhook-port PORT (for example --webhook-port 8787)."
    ) in stderr
    assert SECRET not in stderr
