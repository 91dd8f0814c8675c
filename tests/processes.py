"""Running `lexey-mcp` the way hosts do, for tests: a clean environment, a free loopback port, a subprocess
serving streamable HTTP, and an `mcp.Client` for it."""

from __future__ import annotations

import functools
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from lexey_mcp.sandbox import Sandbox, client_env
from tests.streams import CUSTOMER_KEY, LEXI_KEY, MANAGEMENT_KEY
from tests.waiting import accepts, wait_until

SERVER = [sys.executable, "-m", "lexey_mcp"]
STARTUP_SECONDS = 60.0
STOP_SECONDS = 10.0


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
    server = ServerProcess(f"http://{url_host}:{port}/mcp", process, log)
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
