"""`lexey-mcp` as a host runs it: a stdio subprocess, streamable HTTP on loopback, the demo, the refusals."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from mcp import Client, StdioServerParameters

from lexey_mcp import __version__
from lexey_mcp.cli import main
from lexey_mcp.models import ChatResult
from lexey_mcp.sandbox import Fault, Sandbox
from tests.processes import SERVER, clean_env, free_port, http_server, mcp_client, upstream_env
from tests.streams import CUSTOMER_KEY, LEXI_KEY, chat_event

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SCRIPT = str(Path(sys.executable).parent / "lexey-mcp")  # the console script, installed beside this Python
TOKEN = "tok_Zq8LmW3vRt6YpX1c"


def test_help_runs() -> None:
    for command in ([SCRIPT, "--help"], [*SERVER, "--help"]):
        done = subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=30, check=False)
        assert done.returncode == 0
        assert "--transport" in done.stdout
        assert "sandbox" in done.stdout


async def test_stdio_subprocess_with_unicode_line_separators(sandbox: Sandbox) -> None:
    text = "a\u2028b\u0085c\u2029d ✓"
    sandbox.inject(
        Fault(
            target="customer",
            raw_chunks=[(chat_event(1, {"type": "delta", "text": text}) + chat_event(2, "[DONE]")).decode("latin-1")],
        )
    )
    params = StdioServerParameters(command=SERVER[0], args=SERVER[1:], env=clean_env(**upstream_env(sandbox)))
    async with Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("send_customer_message", {"message": "hello"})
    assert len(names) == 8
    assert not result.is_error
    assert ChatResult.model_validate(result.structured_content).text == text


async def test_stdio_sandbox_mode_needs_no_keys() -> None:
    params = StdioServerParameters(
        command=SERVER[0], args=[*SERVER[1:], "--sandbox", "--toolsets", "lexi"], env=clean_env()
    )
    async with Client(params, mode="legacy") as client:
        names = [t.name for t in (await client.list_tools()).tools]
        result = await client.call_tool("lexi_chat", {"message": "Which deals are open?"})
    assert names == ["lexi_chat"]
    assert not result.is_error


async def test_sandbox_port_chooses_the_embedded_sandbox_port() -> None:
    port = free_port()
    params = StdioServerParameters(
        command=SERVER[0], args=[*SERVER[1:], "--sandbox", "--sandbox-port", str(port)], env=clean_env()
    )
    async with Client(params) as client:
        result = await client.call_tool("send_customer_message", {"message": "Hello"})
        async with httpx2.AsyncClient(trust_env=False) as http:
            stats = (await http.get(f"http://127.0.0.1:{port}/_sandbox/stats")).json()
    assert not result.is_error
    assert stats["requests"] >= 1


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_streamable_http_without_token_on_loopback(sandbox: Sandbox, mode: str, tmp_path: Path) -> None:
    async with http_server(sandbox, tmp_path) as server, mcp_client(server.url, mode) as client:
        result = await client.call_tool("send_customer_message", {"message": "hello"})
    assert not result.is_error
    assert ChatResult.model_validate(result.structured_content).outcome == "complete"


async def test_streamable_http_with_token(sandbox: Sandbox, tmp_path: Path) -> None:
    async with http_server(sandbox, tmp_path, "--stateless", LEXEY_MCP_AUTH_TOKEN=TOKEN) as server:
        url = server.url
        async with httpx2.AsyncClient(trust_env=False) as raw:
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": f"Bearer {TOKEN}x"},
            ):
                response = await raw.post(
                    url, json=body, headers={"Accept": "application/json, text/event-stream", **headers}
                )
                assert response.status_code == 401
                assert TOKEN not in response.text
        async with mcp_client(url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            result = await client.call_tool("lexi_chat", {"message": "Who is Jane?"})
    assert not result.is_error
    # The MCP token is ours: it is never passed on to the upstream.
    assert sandbox.last_headers["lexi"]["authorization"] == f"Bearer {LEXI_KEY}"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.com"])
def test_non_loopback_without_token_is_refused(host: str) -> None:
    done = subprocess.run(
        [*SERVER, "--transport", "http", "--host", host],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "LEXEY_MCP_AUTH_TOKEN" in done.stderr
    assert done.stdout == ""


def test_bad_toolsets_argument() -> None:
    done = subprocess.run(
        [*SERVER, "--toolsets", "billing"], capture_output=True, text=True, env=clean_env(), timeout=30, check=False
    )
    assert done.returncode == 2
    assert "choose from customer, management, lexi" in done.stderr


def test_bad_configuration_exits_with_the_variable_named() -> None:
    done = subprocess.run(
        SERVER,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=clean_env(LEXEY_BASE_URL="ftp://nope", LEXEY_CUSTOMER_KEY=CUSTOMER_KEY),
    )
    assert done.returncode == 2
    assert done.stderr == (
        "lexey-mcp: LEXEY_BASE_URL must be an http:// or https:// URL; for example LEXEY_BASE_URL=https://lexey.ai/api/v1.\n"
    )
    assert CUSTOMER_KEY[4:12] not in done.stderr + done.stdout


SECRET = "wbk_Pasted_By_Mistake_9f3k2"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "LEXEY_STREAM_TIMEOUT",
            "-5",
            "LEXEY_STREAM_TIMEOUT must be a number greater than 0; for example LEXEY_STREAM_TIMEOUT=130.",
        ),
        ("LEXEY_READ_TIMEOUT", SECRET, "LEXEY_READ_TIMEOUT must be a number; for example LEXEY_READ_TIMEOUT=125."),
        ("LEXEY_MAX_RETRIES", SECRET, "LEXEY_MAX_RETRIES must be a whole number; for example LEXEY_MAX_RETRIES=3."),
        (
            "LEXEY_MAX_RETRIES",
            "11",
            "LEXEY_MAX_RETRIES must be a whole number at most 10; for example LEXEY_MAX_RETRIES=3.",
        ),
        # Under 32 characters the SDK would refuse it later, with a traceback.
        (
            "LEXEY_MCP_STATE_KEY",
            "tooShortStateKey",
            "LEXEY_MCP_STATE_KEY must be at least 32 characters; for example "
            "LEXEY_MCP_STATE_KEY=\"$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\".",
        ),
        (
            "LEXEY_BASE_URL",
            f"https://user:{SECRET}@lexey.example/api/v1",
            "LEXEY_BASE_URL must be a URL without credentials (no user:password@): keys go in their own variables; "
            "for example LEXEY_BASE_URL=https://lexey.ai/api/v1.",
        ),
        (
            "LEXI_BASE_URL",
            f"http://{SECRET}@127.0.0.1:9/gw",
            "LEXI_BASE_URL must be a URL without credentials (no user:password@): keys go in their own variables; "
            "for example LEXI_BASE_URL=https://data.leadlex.com/functions/v1/api-gateway.",
        ),
        (
            "LEXEY_MCP_RATE_LIMIT",
            "60 a min",
            "LEXEY_MCP_RATE_LIMIT must be a count of calls per second, minute or hour: N/second, N/minute or N/hour; "
            "for example LEXEY_MCP_RATE_LIMIT=60/minute.",
        ),
        (
            "LEXEY_REDIS_URL",
            f"http://:{SECRET}@127.0.0.1:6379/0",
            "LEXEY_REDIS_URL must be a redis://, rediss:// or unix:// URL (redis://host:port/db); "
            "for example LEXEY_REDIS_URL=redis://localhost:6379/0.",
        ),
        (
            "LEXEY_LOG_LEVEL",
            SECRET,
            "LEXEY_LOG_LEVEL must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'.",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable_never_its_value(variable: str, value: str, message: str) -> None:
    done = subprocess.run(
        SERVER, capture_output=True, text=True, timeout=30, check=False, env=clean_env(**{variable: value})
    )
    assert done.returncode == 2
    assert done.stderr == f"lexey-mcp: {message}\n"
    assert "Pasted" not in done.stderr
    assert value not in done.stderr
    assert "pydantic" not in done.stderr


def test_a_short_auth_token_is_refused_saying_why() -> None:
    done = subprocess.run(
        [*SERVER, "--transport", "http"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=clean_env(LEXEY_MCP_AUTH_TOKEN="tok_15_chars_xx"),
    )
    assert done.returncode == 2
    assert done.stderr.startswith("lexey-mcp: LEXEY_MCP_AUTH_TOKEN must be at least 16 characters")
    assert "tok_15_chars_xx" not in done.stderr
    assert len(done.stderr.splitlines()) == 1


async def test_read_only_over_stdio() -> None:
    params = StdioServerParameters(command=SERVER[0], args=[*SERVER[1:], "--sandbox", "--read-only"], env=clean_env())
    async with Client(params) as client:
        names = [t.name for t in (await client.list_tools()).tools]
    assert names == ["get_conversation_messages", "list_escalations"]


def test_demo_runs_the_whole_workflow() -> None:
    done = subprocess.run(
        [SCRIPT, "demo"],
        capture_output=True,
        text=True,
        env=clean_env(LEXEY_LOG_LEVEL="INFO"),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "escalated: yes; every reply complete: yes" in done.stdout
    assert "handing you over" in done.stdout
    assert "1 escalation" in done.stdout
    # The transcript once, in words, then where to go next; no log lines unless -v.
    assert done.stdout.count("I was charged twice") == 1
    # The scenario right under its heading, then the escalation it caused arriving as an event.
    assert done.stdout.index("== customer scenario") < done.stdout.index("I was charged twice")
    assert done.stdout.index("I was charged twice") < done.stdout.index("== event: lexey://escalations")
    assert "None" not in done.stdout
    assert "True" not in done.stdout
    assert "(reply complete; conversation escalated)" in done.stdout
    assert "\nNext:\n  connect a host:" in done.stdout
    assert "lexey-mcp test examples/suites/" in done.stdout
    assert done.stderr == ""


def test_demo_verbose_shows_the_logs() -> None:
    done = subprocess.run(
        [SCRIPT, "demo", "-v", "--delay", "0"],
        capture_output=True,
        text=True,
        env=clean_env(LEXEY_LOG_LEVEL="INFO"),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "INFO lexey_mcp.server: sandbox serving at" in done.stderr


# What answers before any command runs: in a fresh interpreter, each of these, then the heavy packages it loaded.
_LIGHT_PROBE = """
import json, sys
from lexey_mcp.__main__ import main
codes = []
for argv in json.loads(sys.argv[1]):
    try:
        codes.append(main(argv))
    except SystemExit as exc:
        codes.append(exc.code)
heavy = ("mcp", "pydantic", "pydantic_core", "dotenv", "httpx2", "httpcore2", "starlette", "uvicorn")
print(json.dumps([codes, sorted({m.split(".")[0] for m in sys.modules} & set(heavy))]), file=sys.stderr)
"""


@pytest.mark.e2e
def test_version_help_and_argument_errors_import_no_mcp_pydantic_or_http() -> None:
    cases = {
        ("--version",): 0,
        ("--help",): 0,
        ("sandbox", "--help"): 0,
        ("demo", "--help"): 0,
        ("test", "--help"): 0,
        ("--toolsets", "nope"): 2,
        ("--transport", "carrier-pigeon"): 2,
        ("test",): 2,  # no suite given
        ("demo", "--delay", "soon"): 2,
        ("--stateless", "sandbox"): 2,  # a server option with a command
    }
    done = subprocess.run(
        [sys.executable, "-c", _LIGHT_PROBE, json.dumps([list(argv) for argv in cases])],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    codes, heavy = json.loads(done.stderr.splitlines()[-1])
    assert codes == list(cases.values())
    assert heavy == []
    assert f"lexey-mcp {__version__}" in done.stdout


def test_a_stdio_start_refused_early_leaves_the_collector_on(capsys: pytest.CaptureFixture[str]) -> None:
    """A stdio start turns the cyclic collector off while it builds the server; refused before that, `main` must
    not leave it off for whoever called it in-process."""
    assert gc.isenabled()
    assert main(["--request-keys", "required"]) == 2
    assert "--request-keys required needs --transport http" in capsys.readouterr().err
    assert gc.isenabled()
