"""Fixtures for the sandbox tests: a running sandbox and a raw HTTP client (no proxies from the environment)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx2
import pytest

from lexey_mcp.sandbox import Sandbox, SandboxConfig


@pytest.fixture(scope="session")
def tls() -> ssl.SSLContext:
    """Built once: httpx2 otherwise loads the CA bundle for every client, ~30 ms each (the sandbox is plain HTTP)."""
    return ssl.create_default_context()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sb(anyio_backend: str) -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxConfig(delay=0.0)) as sandbox:
        yield sandbox


@pytest.fixture
async def client(anyio_backend: str, tls: ssl.SSLContext) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(trust_env=False, timeout=5.0, verify=tls) as http:
        yield http
