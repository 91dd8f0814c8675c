"""Keys never leave: every error path driven with distinctive keys, every output scanned for any 8-char slice."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from lexey_mcp.cli import configure_logging
from lexey_mcp.observability import RedactingFormatter
from lexey_mcp.sandbox import Fault, Sandbox, SandboxConfig
from lexey_mcp.server import build_server
from tests.conftest import sandbox_settings_for
from tests.reading import leaks
from tests.streams import ALL_KEYS, CUSTOMER_KEY, LEXI_KEY, MANAGEMENT_KEY, chat_event, lexi_event

pytestmark = pytest.mark.anyio

AUTH_TOKEN = "tok_Hq2WsX7eDc4RfV9tGb1YnJ8u"
SECRETS = (*ALL_KEYS, AUTH_TOKEN)


@contextmanager
def debug_logging() -> Iterator[None]:
    """Our stderr logging at DEBUG, restored afterwards. Entered inside the test, so its handler writes to the
    stderr that capfd captures."""
    root = logging.getLogger()
    raise_exceptions = logging.raiseExceptions
    saved = (root.handlers[:], root.level)
    quiet = {name: logging.getLogger(name).level for name in ("httpx2", "httpcore2", "uvicorn.access", "lexey_mcp")}
    configure_logging("DEBUG", list(SECRETS))
    try:
        yield
    finally:
        root.handlers[:], root.level = saved
        logging.raiseExceptions = raise_exceptions
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)


ECHO_CHAT = [
    chat_event(1, {"type": "delta", "text": "ok "}),
    chat_event(
        2,
        {
            "type": "error",
            "message": f"key {CUSTOMER_KEY} / Bearer {MANAGEMENT_KEY} refused",
            "code": f"bad_{LEXI_KEY}",
        },
    ),
    chat_event(3, "[DONE]"),
]
ECHO_LEXI = [lexi_event("error", f"upstream said Authorization: Bearer {LEXI_KEY}"), b"data: [DONE]\n\n"]


async def drive_everything(client: Client, sandbox: Sandbox, seen: list[str]) -> None:
    """Every tool, every documented failure, and errors that echo the keys back."""

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    async def call(tool: str, arguments: dict[str, Any]) -> None:
        result = await client.call_tool(tool, arguments, progress_callback=progress)
        seen.append(json.dumps(result.model_dump(mode="json")))

    cid = str(uuid_of(await client.call_tool("create_conversation", {})))
    await call("send_customer_message", {"message": "hello", "conversation_id": cid})
    await call("configure_org", {"instruction": "Set our agent name to 'Ava'"})
    await call("lexi_chat", {"message": "Who is Jane?"})
    await call("run_customer_scenario", {"messages": ["hi", "refund please"]})
    await call("get_conversation_messages", {"conversation_id": cid})
    for status in (400, 401, 402, 403, 404, 429, 500, 503):
        for target, tool, args in (
            ("customer", "send_customer_message", {"message": "x", "conversation_id": cid}),
            ("management", "configure_org", {"instruction": "x"}),
            ("lexi", "lexi_chat", {"message": "x"}),
        ):
            sandbox.inject(Fault(target=target, status=status, times=4))
            await call(tool, args)
            sandbox.clear_faults()
    sandbox.inject(Fault(target="customer", status=502, html_error=True))
    await call("send_customer_message", {"message": "x", "conversation_id": cid})
    sandbox.inject(Fault(target="customer", raw_chunks=ECHO_CHAT))
    await call("send_customer_message", {"message": "x", "conversation_id": cid})
    sandbox.inject(Fault(target="lexi", raw_chunks=ECHO_LEXI))
    await call("lexi_chat", {"message": "x"})
    sandbox.inject(Fault(target="customer", drop_after=1))
    await call("send_customer_message", {"message": "x", "conversation_id": cid})
    await call("send_customer_message", {"message": "", "conversation_id": "../x"})
    await call("get_conversation_messages", {"conversation_id": "550e8400-e29b-41d4-a716-446655440000"})


def uuid_of(result: Any) -> str:
    return str(result.structured_content["conversation_id"])


async def test_no_key_in_results_progress_or_debug_logs(sandbox: Sandbox, capfd: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []
    with debug_logging():
        async with Client(build_server(sandbox_settings_for(sandbox, auth_token=AUTH_TOKEN))) as client:
            await drive_everything(client, sandbox, seen)
        logging.getLogger("lexey_mcp.test").debug("headers: Authorization: Bearer %s", CUSTOMER_KEY)
    captured = capfd.readouterr()
    assert "DEBUG lexey_mcp.client:" in captured.err  # our DEBUG lines were on (httpx2's are never: test_logging.py)
    assert leaks("\n".join(seen), SECRETS) == []
    assert leaks(captured.err + captured.out, SECRETS) == []


async def test_keys_refused_by_the_upstream_and_wrong_key_settings(capfd: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []
    # The upstream knows other keys: every request is a real 401 for ours.
    with debug_logging():
        await _refused_everywhere(seen)
    captured = capfd.readouterr()
    assert any("HTTP 401" in s for s in seen)
    assert any("LEXEY_MANAGEMENT_KEY must be" in s for s in seen)
    assert leaks("\n".join(seen), SECRETS) == []
    assert leaks(captured.err + captured.out, SECRETS) == []


async def _refused_everywhere(seen: list[str]) -> None:
    async with Sandbox(SandboxConfig(delay=0, keys=frozenset({"lxc_other", "lxm_other", "wbk_other"}))) as sb:
        for overrides in (
            {},
            {"management_key": CUSTOMER_KEY, "customer_key": LEXI_KEY},
            {"lexi_api_key": f" {LEXI_KEY}\n", "customer_key": f"{CUSTOMER_KEY[:9]} {CUSTOMER_KEY[9:]}"},
        ):
            async with Client(build_server(sandbox_settings_for(sb, **overrides))) as client:
                for tool, args in (
                    ("create_conversation", {}),
                    ("send_customer_message", {"message": "x"}),
                    ("configure_org", {"instruction": "x"}),
                    ("lexi_chat", {"message": "x"}),
                ):
                    result = await client.call_tool(tool, args)
                    assert result.is_error
                    seen.append(json.dumps(result.model_dump(mode="json")))


async def test_unreachable_upstream(sandbox: Sandbox, capfd: pytest.CaptureFixture[str]) -> None:
    settings = sandbox_settings_for(
        sandbox, base_url="http://127.0.0.1:9/api/v1", max_retries=1, max_retry_wait=0.1, stream_timeout=30
    )
    with debug_logging():
        async with Client(build_server(settings)) as client:
            unreachable = await client.call_tool("send_customer_message", {"message": "x"})
    assert unreachable.is_error
    assert "Could not connect" in json.dumps(unreachable.model_dump(mode="json"))
    assert leaks(json.dumps(unreachable.model_dump(mode="json")) + capfd.readouterr().err, SECRETS) == []


def test_tracebacks_in_logs_are_redacted() -> None:
    record_logger = logging.getLogger("lexey_mcp.test.traceback")
    formatter = RedactingFormatter([CUSTOMER_KEY])
    try:
        raise RuntimeError(f"boom with {CUSTOMER_KEY} and Bearer {LEXI_KEY}")
    except RuntimeError:
        record = record_logger.makeRecord(
            "x", logging.ERROR, __file__, 1, "failed: %s", (MANAGEMENT_KEY,), sys.exc_info()
        )
    text = formatter.format(record)
    assert "RuntimeError" in text
    assert "Traceback" in text
    assert leaks(text, SECRETS) == []


@pytest.mark.e2e
async def test_no_key_over_stdio_at_debug(sandbox: Sandbox) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXEY_", "LEXI_"))}
    env.update(
        LEXEY_LOG_LEVEL="DEBUG",
        LEXEY_BASE_URL=sandbox.base_url,
        LEXI_BASE_URL=sandbox.lexi_base_url,
        LEXEY_CUSTOMER_KEY=CUSTOMER_KEY,
        LEXEY_MANAGEMENT_KEY=MANAGEMENT_KEY,
        LEXI_API_KEY=LEXI_KEY,
        LEXEY_MCP_AUTH_TOKEN=AUTH_TOKEN,
    )
    params = StdioServerParameters(command=sys.executable, args=["-m", "lexey_mcp"], env=env)
    seen: list[str] = []
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            await drive_everything(client, sandbox, seen)
        errlog.seek(0)
        stderr = errlog.read()
    assert "DEBUG" in stderr
    assert leaks("\n".join(seen), SECRETS) == []
    assert leaks(stderr, SECRETS) == []
