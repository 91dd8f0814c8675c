"""A real `redis-server` for tests: started on a free loopback port in a temporary directory, stopped after.

Skips when redis-server is not installed, unless CI promised it (LEXEY_CI_REQUIRE includes "redis").
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import free_port
from tests.waiting import wait_until_sync

STARTUP_SECONDS = 60.0


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    return "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None


@dataclass
class RedisServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    def stop(self) -> None:
        """Stop the server (for tests of Redis going away); `start` again on the same port and directory."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def start(self) -> None:
        self.process = _launch(self.port, self.directory)


def _launch(port: int, directory: Path) -> subprocess.Popen[bytes]:
    binary = redis_binary()
    assert binary is not None
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"redis-server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        wait_until_sync(answers, f"redis-server answering PING on port {port}", within=STARTUP_SECONDS)
    except AssertionError:
        process.kill()
        raise
    return process


@contextmanager
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server; skips (or fails under LEXEY_CI_REQUIRE=…redis…) when it is not installed."""
    if redis_binary() is None:
        reason = "redis-server is not installed (apt-get install redis-server); .ci/run installs it"
        if "redis" in os.environ.get("LEXEY_CI_REQUIRE", "").split(","):
            pytest.fail(f"{reason} (LEXEY_CI_REQUIRE includes 'redis')")
        pytest.skip(reason)
    directory = tmp_path / "redis"
    directory.mkdir(exist_ok=True)
    port = free_port()
    server = RedisServer(f"redis://127.0.0.1:{port}/0", port, _launch(port, directory), directory)
    try:
        yield server
    finally:
        server.stop()
