"""`lexey-mcp` from a terminal: the line that says what it waits for, Ctrl-C in every mode, help, misplaced options."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.processes import SERVER, clean_env, free_port
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 30.0
#: Generous: the point is that Ctrl-C ends the process with 130 and no traceback, not how fast.
EXIT_SECONDS = 10.0


@contextmanager
def running(
    args: list[str], tmp_path: Path, *, stdin: int | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [*SERVER, *args],
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=clean_env(LEXEY_LOG_LEVEL="INFO"),
            cwd=tmp_path,
        )
    try:
        yield process, out, err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    def holds() -> bool:
        assert process.poll() is None, f"exited with {process.returncode} before {what}"
        return condition()

    wait_until_sync(holds, what, within=WAIT_SECONDS)


def interrupt(process: subprocess.Popen[bytes], err: Path) -> None:
    process.send_signal(signal.SIGINT)
    try:
        status = process.wait(timeout=EXIT_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {EXIT_SECONDS} s after Ctrl-C")
    stderr = err.read_text(errors="replace")
    assert status == 130, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]


def test_stdio_from_a_terminal_says_what_it_waits_for_and_ctrl_c_ends_it(tmp_path: Path) -> None:
    controller, terminal = os.openpty()
    try:
        with running(["--sandbox"], tmp_path, stdin=terminal) as (process, _, err):
            wait_for(lambda: "waiting for an MCP host" in err.read_text(), process, "the terminal line")
            lines = [line for line in err.read_text().splitlines() if "waiting for an MCP host" in line]
            assert lines == [
                "lexey-mcp: waiting for an MCP host on stdin (Ctrl-D quits). `lexey-mcp demo` shows what it does; "
                "`lexey-mcp --help` lists the options."
            ]
            interrupt(process, err)
    finally:
        os.close(controller)
        os.close(terminal)


def test_stdio_from_a_pipe_prints_nothing_to_stderr(tmp_path: Path) -> None:
    done = subprocess.run([*SERVER], input=b"", capture_output=True, env=clean_env(), timeout=60, check=False)
    assert done.returncode == 0
    assert b"waiting for an MCP host" not in done.stderr


def test_ctrl_c_ends_http(tmp_path: Path) -> None:
    port = free_port()
    with running(["--transport", "http", "--port", str(port)], tmp_path) as (process, _, err):
        wait_for(lambda: "serving streamable HTTP" in err.read_text(), process, "the server")
        interrupt(process, err)


def test_ctrl_c_ends_the_sandbox(tmp_path: Path) -> None:
    with running(["sandbox", "--port", str(free_port())], tmp_path) as (process, out, err):
        wait_for(lambda: "export LEXEY_BASE_URL" in out.read_text(), process, "the banner")
        interrupt(process, err)


def test_ctrl_c_ends_the_demo_mid_stream(tmp_path: Path) -> None:
    with running(["demo", "--delay", "0.3"], tmp_path) as (process, out, err):
        wait_for(lambda: "== configure 1/3" in out.read_text(), process, "the first step")
        interrupt(process, err)


@pytest.mark.parametrize("command", ["sandbox", "demo"])
def test_command_help_describes_it_with_every_default(command: str) -> None:
    done = subprocess.run([*SERVER, command, "--help"], capture_output=True, text=True, env=clean_env(), timeout=30)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    description = text.split("options:")[0]
    assert len(description.split()) > 12, text  # a description, not just the usage line
    assert "seconds between events (default: 0.02)" in text
    if command == "sandbox":
        assert "bind address (default: 127.0.0.1)" in text
        assert "port (default: 8765)" in text


def test_top_level_help_shows_defaults_in_words() -> None:
    done = subprocess.run([*SERVER, "--help"], capture_output=True, text=True, env=clean_env(), timeout=30)
    text = " ".join(done.stdout.split())
    assert "(default: customer,management,lexi,events)" in text
    assert "HTTP port (default: 8000)" in text
    assert "False" not in text
    assert "with --sandbox: its port (0: any free port) (default: 0)" in text


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--sandbox-delay", "0", "demo"], "--sandbox-delay"),
        (["--port", "9999", "sandbox"], "--port"),
        (["--read-only", "demo"], "--read-only"),
        (["--toolsets", "lexi", "sandbox"], "--toolsets"),
    ],
)
def test_a_server_option_before_a_command_is_refused_not_ignored(argv: list[str], flag: str) -> None:
    done = subprocess.run([*SERVER, *argv], capture_output=True, text=True, env=clean_env(), timeout=30)
    assert done.returncode == 2
    command = argv[-1]
    assert done.stderr.strip() == (
        f"lexey-mcp: {flag} is an option of the server, not of `{command}`: put a command's options after it "
        f"(lexey-mcp {command} --help lists them)."
    )
