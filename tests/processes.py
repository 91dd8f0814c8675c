"""Running `lexey-mcp` the way hosts do, for tests: a clean environment, a free loopback port, a subprocess
serving streamable HTTP, and an `mcp.Client` for it."""

from __future__ import annotations

import functools
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from lexey_mcp.paths import MCP_PATH
from lexey_mcp.sandbox import Sandbox, client_env
from tests.streams import CUSTOMER_KEY, LEXI_KEY, MANAGEMENT_KEY
from tests.waiting import accepts, wait_until

SERVER = [sys.executable, "-m", "lexey_mcp"]
STARTUP_SECONDS = 60.0
STOP_SECONDS = 10.0
#: Generous: a loaded 2-core machine starts Python slowly; the point is what happens, not how fast.
WAIT_SECONDS = 90.0
EXIT_SECONDS = 30.0
#: On stderr, what says something broke.
BROKEN = ("Traceback", "KeyboardInterrupt", "Exception ignored", "Exception in ")
#: On stderr: the HTTP transport serves, at this URL.
SERVING = re.compile(r"serving streamable HTTP at (http://\S+/mcp)")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any LEXEY_/LEXI_ setting (a developer's .env or shell must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXEY_", "LEXI_"))}
    return {**env, "LEXEY_LOG_LEVEL": "WARNING", **extra}


def upstream_env(sb: Sandbox) -> dict[str, str]:
    """The sandbox's client environment, with the distinctive test keys (it takes any key of the right type)."""
    return client_env(sb.url, customer_key=CUSTOMER_KEY, management_key=MANAGEMENT_KEY, lexi_key=LEXI_KEY)


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


@asynccontextmanager
async def http_server(
    sb: Sandbox,
    log_dir: Path,
    *args: str,
    host: str = "127.0.0.1",
    open_files: str = "",
    **env: str,
) -> AsyncIterator[ServerProcess]:
    """`lexey-mcp --transport http` on a free loopback port of `host` (any spelling), pointed at `sb`; stderr goes
    to a file (never a pipe nobody reads, which would block a chatty server). `open_files="SOFT:HARD"` starts it
    with that RLIMIT_NOFILE."""
    preexec_fn = None
    if open_files:
        soft, hard = (int(n) for n in open_files.split(":"))
        preexec_fn = functools.partial(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
    address = host.strip("[]")
    port = free_port(address if address != "localhost" else "127.0.0.1")
    log = log_dir / f"lexey-mcp-{port}.stderr"
    with log.open("wb") as err:
        process = subprocess.Popen(  # noqa: ASYNC220 - returns once the child is forked; waits below are async
            [*SERVER, "--transport", "http", "--host", host, "--port", str(port), *args],
            env=clean_env(**{**upstream_env(sb), **env}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=log_dir,  # no .env file there
            preexec_fn=preexec_fn,
        )
    url_host = f"[{address}]" if ":" in address else address
    server = ServerProcess(f"http://{url_host}:{port}{MCP_PATH}", process, log)
    try:

        async def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}: {server.stderr()[-3000:]}")
            return await accepts(address, port)

        await wait_until(listening, f"{server.url} accepting connections", within=STARTUP_SECONDS)
        yield server
    finally:
        # Shielded: a test that timed out must still stop its server.
        with anyio.CancelScope(shield=True):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                await anyio.to_thread.run_sync(functools.partial(process.wait, timeout=STOP_SECONDS))
            except subprocess.TimeoutExpired:
                process.kill()
                await anyio.to_thread.run_sync(functools.partial(process.wait, timeout=STOP_SECONDS))


@asynccontextmanager
async def mcp_client(url: str, mode: str = "auto", **http_args: Any) -> AsyncIterator[Client]:
    """`mcp.Client` over streamable HTTP with our own httpx2 client (loopback: no proxies from the environment)."""
    limits = httpx2.Limits(max_connections=512, max_keepalive_connections=64)
    async with (
        httpx2.AsyncClient(trust_env=False, timeout=30, limits=limits, **http_args) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


async def assert_unfinished_headers_are_cut_off(url: str, within: float) -> None:
    """A connection to `url`'s listener that sends a request line and a header, but never the blank line that ends the
    headers, is closed by the server within `within` seconds (its header timeout), not held forever."""
    target = httpx2.URL(url)
    assert target.port is not None
    stream = await anyio.connect_tcp(target.host, target.port)
    try:
        await stream.send(b"POST " + target.raw_path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with anyio.fail_after(within):
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError)):
                await stream.receive()
    finally:
        await stream.aclose()


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    tmp: Path

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not condition():
            assert self.popen.poll() is None, f"exited with {self.popen.returncode} before {what}: {self.stderr()}"
            assert time.monotonic() < deadline, f"no {what} within {WAIT_SECONDS} s: {self.stderr()[-3000:]}"
            time.sleep(0.02)  # polling for the condition, not waiting for time to pass

    def send(self, message: dict[str, Any]) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(message).encode() + b"\n")
        self.popen.stdin.flush()

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def finish(self, within: float = EXIT_SECONDS) -> int:
        """The exit status, once stderr and the temporary directory are found clean."""
        try:
            status = self.popen.wait(timeout=within)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {within} s later: {self.stderr()[-3000:]}")
        stderr = self.stderr()
        assert not [word for word in BROKEN if word in stderr], stderr[-5000:]
        assert sorted(p.name for p in self.tmp.iterdir()) == [], stderr[-3000:]
        return status

    def stopped_by(self, signum: int) -> None:
        assert self.finish() == 128 + signum, self.stderr()[-3000:]

    def http_url(self) -> str:
        found = SERVING.search(self.stderr())
        assert found is not None
        return found.group(1)


@contextmanager
def started(tmp_path: Path, *args: str, **env: str) -> Iterator[Process]:
    """`lexey-mcp ARGS` with its stdin left open, as a host runs it, a TMPDIR of its own, stdout and stderr in files."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        popen = subprocess.Popen(
            [*SERVER, *args],
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=stderr,
            env=clean_env(TMPDIR=str(tmp), LEXEY_LOG_LEVEL="INFO", LEXEY_STATE_DIR=str(tmp_path / "state"), **env),
            cwd=tmp_path,
        )
    try:
        yield Process(popen, out, err, tmp)
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()
        assert popen.stdin is not None
        popen.stdin.close()
