"""Ctrl-C (SIGINT) and SIGTERM at any moment of every mode end the process cleanly (issue 19): exit status 130 or
143, nothing on stderr that says something broke (a traceback, "Exception ignored"), no temporary directory left.

Each process has a TMPDIR of its own. Each moment is reached by waiting for what shows it (the signal handlers in
place, a line, an answer), never by sleeping: on a loaded machine a sleep lands in another moment."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from lexey_mcp.paths import HEALTH_PATH, MCP_PATH
from tests.jsonrpc import initialize
from tests.processes import SERVING, WAIT_SECONDS, Process, started

pytestmark = pytest.mark.e2e

LEGACY = "2025-11-25"
INITIALIZE = initialize(LEGACY, client="exits")
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
STREAMING_CALL = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "send_customer_message", "arguments": {"message": "Hello"}, "_meta": {"progressToken": "p"}},
}


# The moments, each reached by waiting for what shows it.
def handlers_in_place(process: Process) -> None:
    """The entry point's first act is done: SIGTERM is caught (Python itself catches SIGINT only). What follows are
    the imports."""

    def caught() -> bool:
        status = Path(f"/proc/{process.popen.pid}/status").read_text()
        mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
        return bool(mask & (1 << (signal.SIGTERM - 1)))

    process.wait_for(caught, "SIGTERM handler")


def first_line(process: Process) -> None:
    process.wait_for(lambda: "\n" in process.stderr(), "first stderr line")


def stdio_serving(process: Process) -> None:
    process.send(INITIALIZE)
    process.wait_for(lambda: '"id":1' in process.stdout(), "answer to initialize")


def http_serving(process: Process) -> None:
    process.wait_for(lambda: SERVING.search(process.stderr()) is not None, "serving line")

    def answers() -> bool:
        try:
            return httpx2.get(process.http_url().removesuffix(MCP_PATH) + HEALTH_PATH, trust_env=False).status_code > 0
        except httpx2.TransportError:
            return False

    process.wait_for(answers, "an HTTP answer")


SERVE: dict[str, Callable[[Process], None]] = {"stdio": stdio_serving, "http": http_serving}
TRANSPORT_ARGS = {"stdio": [], "http": ["--transport", "http", "--port", "0"]}
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}

CASES = [
    pytest.param(transport, sandbox, moment, name, id=f"{transport}-{'sandbox' * sandbox or 'plain'}-{moment}-{name}")
    for transport in ("stdio", "http")
    for sandbox in (False, True)
    for moment, name in [
        ("imports", "SIGINT" if sandbox else "SIGTERM"),
        ("start-up", "SIGTERM" if sandbox else "SIGINT"),
        ("serving", "SIGINT"),
        ("serving", "SIGTERM"),
    ]
]


@pytest.mark.parametrize(("transport", "sandbox", "moment", "name"), CASES)
def test_a_signal_at_any_moment_ends_the_server_cleanly(
    tmp_path: Path, transport: str, sandbox: bool, moment: str, name: str
) -> None:
    args = [*TRANSPORT_ARGS[transport], *(["--sandbox"] if sandbox else [])]
    reach = {"imports": handlers_in_place, "start-up": first_line, "serving": SERVE[transport]}[moment]
    with started(tmp_path, *args) as process:
        reach(process)
        process.signal(SIGNALS[name])
        process.stopped_by(SIGNALS[name])


def test_a_signal_mid_stream_over_stdio_ends_it_cleanly(tmp_path: Path) -> None:
    with started(tmp_path, "--sandbox", "--sandbox-delay", "0.5") as process:
        stdio_serving(process)
        process.send(INITIALIZED)
        process.send(STREAMING_CALL)
        process.wait_for(lambda: "notifications/progress" in process.stdout(), "progress of the streaming call")
        process.signal(signal.SIGINT)
        process.stopped_by(signal.SIGINT)


def test_a_signal_mid_stream_over_http_ends_it_cleanly(tmp_path: Path) -> None:
    with started(tmp_path, *TRANSPORT_ARGS["http"], "--sandbox", "--sandbox-delay", "0.5") as process:
        http_serving(process)
        accept = {"accept": "application/json, text/event-stream"}
        with httpx2.Client(trust_env=False, timeout=WAIT_SECONDS, headers=accept) as http:
            url = process.http_url()
            session = http.post(url, json=INITIALIZE).headers["mcp-session-id"]
            headers = {"mcp-session-id": session, "mcp-protocol-version": LEGACY}
            assert http.post(url, json=INITIALIZED, headers=headers).status_code == 202
            with http.stream("POST", url, json=STREAMING_CALL, headers=headers) as response:
                for line in response.iter_lines():
                    if "notifications/progress" in line:
                        break
                process.signal(signal.SIGTERM)
                process.stopped_by(signal.SIGTERM)


def test_a_second_signal_during_the_shutdown_changes_nothing(tmp_path: Path) -> None:
    with started(tmp_path, *TRANSPORT_ARGS["http"], "--sandbox") as process:
        http_serving(process)
        process.signal(signal.SIGTERM)
        process.wait_for(lambda: "Shutting down" in process.stderr(), "the shutdown")
        process.signal(signal.SIGINT)
        process.stopped_by(signal.SIGTERM)  # the first signal's status, after the whole clean-up


@pytest.mark.parametrize("sandbox", [False, True], ids=["plain", "sandbox"])
def test_a_signal_while_stdio_shuts_down_at_the_end_of_its_input_leaves_nothing_behind(
    tmp_path: Path, sandbox: bool
) -> None:
    with started(tmp_path, *(["--sandbox"] if sandbox else [])) as process:
        stdio_serving(process)
        assert process.popen.stdin is not None
        process.popen.stdin.close()  # the host goes away: the server shuts down
        process.signal(signal.SIGINT)
        assert process.finish() in (0, 130)  # 0 when the shutdown ended before the signal came


@pytest.mark.parametrize(
    ("args", "running", "name"),
    [
        (["sandbox", "--port", "0"], "export LEXEY_BASE_URL", "SIGTERM"),
        (["demo", "--delay", "0.3"], "== configure 1/3", "SIGTERM"),
        (["test", "{suite}", "--sandbox", "--delay", "5"], ": running", "SIGTERM"),
    ],
    ids=["sandbox", "demo", "test"],
)
@pytest.mark.parametrize("moment", ["imports", "running"])
def test_a_signal_ends_each_command_cleanly(
    tmp_path: Path, args: list[str], running: str, name: str, moment: str
) -> None:
    suite = tmp_path / "slow.yaml"
    suite.write_text("cases:\n  - {name: slow, turns: [{say: pricing please}]}\n")
    signum = SIGNALS[name] if moment == "running" else signal.SIGINT
    with started(tmp_path, *[arg.format(suite=suite) for arg in args]) as process:
        if moment == "imports":
            handlers_in_place(process)
        else:
            process.wait_for(lambda: running in process.stdout(), "the command under way")
        process.signal(signum)
        process.stopped_by(signum)
