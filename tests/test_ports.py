"""A port a listener cannot have (busy, out of range, or privileged for a user who is not root) is one line on stderr
naming it and what to do, and exit status 2, before anything says it serves (issue 19). Every listener: the HTTP
transport, the embedded sandbox (stdio and HTTP), `lexey-mcp sandbox`, the webhook receiver."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lexey_mcp.cli import build_parser
from lexey_mcp.listeners import PortUnavailable, listen
from tests.processes import SERVER, WAIT_SECONDS, clean_env, started
from tests.test_examples import require


@pytest.fixture
def busy() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the server with its stdin left open, as a host does: it must end by itself, not when stdin closes."""
    with started(tmp_path, *args, **env) as process:
        status = process.finish(within=WAIT_SECONDS)
    return subprocess.CompletedProcess(process.popen.args, status, process.stdout(), process.stderr())


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--transport", "http", "--port", "{port}"],
            "the HTTP transport cannot listen on 127.0.0.1 port {port}: another program uses it; stop that program "
            "or choose another port with --port",
        ),
        (
            ["--sandbox", "--sandbox-port", "{port}"],
            "the sandbox cannot listen on 127.0.0.1 port {port}: another program uses it; stop that program or "
            "choose another port with --sandbox-port",
        ),
        (
            ["--transport", "http", "--port", "0", "--sandbox", "--sandbox-port", "{port}"],
            "the sandbox cannot listen on 127.0.0.1 port {port}: another program uses it; stop that program or "
            "choose another port with --sandbox-port",
        ),
        (
            ["sandbox", "--port", "{port}"],
            "the sandbox cannot listen on 127.0.0.1 port {port}: another program uses it; stop that program or "
            "choose another port with --port",
        ),
        (
            ["--webhook-port", "{port}"],
            "the webhook receiver cannot listen on 127.0.0.1 port {port}: another program uses it; stop that program "
            "or choose another port with --webhook-port",
        ),
    ],
    ids=["http", "stdio-sandbox", "http-sandbox", "sandbox-command", "webhook-receiver"],
)
def test_a_busy_port_is_one_line_and_exit_2_before_serving(
    tmp_path: Path, busy: int, args: list[str], line: str
) -> None:
    done = run(tmp_path, *[arg.format(port=busy) for arg in args], LEXEY_WEBHOOK_SECRET="s" * 32)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"lexey-mcp: {line.format(port=busy)}\n"  # the one line, and nothing said it serves
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--port", "70000"], "--port"),
        (["--port", "-1"], "--port"),
        (["--sandbox-port", "65536"], "--sandbox-port"),
        (["--webhook-port", "eighty"], "--webhook-port"),
        (["sandbox", "--port", "99999"], "--port"),
    ],
)
def test_an_out_of_range_port_is_refused_when_the_arguments_are_read(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert f"argument {option}: must be a port number from 0 (any free port) to 65535, not {argv[-1]!r}" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("port", ["0", "1", "8000", "65535"])
def test_every_port_in_range_is_taken(port: str) -> None:
    assert build_parser().parse_args(["--port", port]).port == int(port)


def test_listen_binds_before_anyone_listens_and_names_a_busy_port(busy: int) -> None:
    sockets = listen("127.0.0.1", 0, "the sandbox")
    try:
        assert sockets[0].getsockname()[1] != 0
    finally:
        for sock in sockets:
            sock.close()
    with pytest.raises(PortUnavailable, match=f"^the sandbox cannot listen on 127.0.0.1 port {busy}: another"):
        listen("127.0.0.1", busy, "the sandbox")


@pytest.mark.e2e
def test_a_privileged_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Root may bind port 80, so as root the process runs without that right (CAP_NET_BIND_SERVICE), as a user's
    would."""
    without_the_right: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            require("setpriv", "setpriv (util-linux) is needed to drop root's right to bind port 80")
        without_the_right = [setpriv, "--bounding-set", "-net_bind_service", "--inh-caps", "-net_bind_service", "--"]
    done = subprocess.run(
        [*without_the_right, *SERVER, "--transport", "http", "--port", "80"],
        input="",
        capture_output=True,
        text=True,
        env=clean_env(LEXEY_STATE_DIR=str(tmp_path / "state")),
        cwd=tmp_path,
        timeout=WAIT_SECONDS,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "lexey-mcp: the HTTP transport cannot listen on 127.0.0.1 port 80: ports below 1024 need administrator "
        "rights; choose another port with --port, 1024 or above\n"
    )
