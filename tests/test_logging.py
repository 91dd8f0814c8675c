"""Logs at DEBUG: one line per upstream request, never a dependency's line per SSE chunk."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from mcp import Client

from lexey_mcp.cli import configure_logging
from lexey_mcp.observability.logs import RedactingFormatter, ThrottledLog
from lexey_mcp.sandbox import Sandbox
from lexey_mcp.server import build_server
from tests.conftest import sandbox_settings_for

pytestmark = pytest.mark.anyio

LONG_REPLY = "Tell me everything about pricing " + "please " * 50


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("lexey_mcp", "httpx2", "httpcore2")}
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


async def test_debug_is_one_line_per_upstream_request(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("DEBUG", [])
    async with Client(build_server(sandbox_settings_for(sandbox))) as client:
        result = await client.call_tool("send_customer_message", {"message": LONG_REPLY})
    assert not result.is_error
    lines = capsys.readouterr().err.splitlines()
    upstream = [line for line in lines if "DEBUG lexey_mcp.client:" in line and "-> 200" in line]
    assert len(upstream) == 1, lines
    assert not [line for line in lines if " httpcore2" in line or " httpx2" in line], lines
    assert len(lines) < 15, lines


def test_text_logs_escape_control_characters_in_logged_values() -> None:
    # A signed webhook's event type is the sender's text: ESC sequences and a forged second line stay on one line.
    formatter = RedactingFormatter([])
    record = logging.LogRecord(
        "lexey_mcp.events", logging.INFO, __file__, 1, "webhook %s for %r", ("\x1b[2Jx\nFORGED ERROR", "a\x9bb"), None
    )
    line = formatter.format(record)
    assert "\n" not in line
    assert "\x1b" not in line
    assert "\x9b" not in line
    assert line.endswith(r"webhook \x1b[2Jx\x0aFORGED ERROR for 'a\x9bb'")


def test_a_repeated_line_is_written_once_per_interval_counting_the_rest() -> None:
    now = [0.0]
    written: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            written.append(record.getMessage())

    logger = logging.getLogger("lexey_mcp.test_throttle")
    logger.addHandler(Collect())
    logger.setLevel(logging.INFO)
    throttled = ThrottledLog(logger, 60.0, clock=lambda: now[0])
    for n in range(100):
        throttled.log(logging.WARNING, "refused %d", n)
    throttled.log(logging.WARNING, "another message")
    now[0] += 61
    throttled.log(logging.WARNING, "refused %d", 100)
    assert written == ["refused 0", "another message", "refused 100 (99 more like it since the last line)"]
