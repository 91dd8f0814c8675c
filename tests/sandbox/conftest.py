"""Fixtures for the sandbox tests: a running sandbox and a raw HTTP client (no proxies from the environment)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx2
import pytest

from lexey_mcp.sandbox import Sandbox


@pytest.fixture(scope="session")
def tls() -> ssl.SSLContext:
    """Built once: httpx2 otherwise loads the CA bundle for every client, ~30 ms each (the sandbox is plain HTTP)."""
    return ssl.create_default_context()


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    """The running sandbox (tests/conftest.py's `sandbox`), under the short name these tests use."""
    return sandbox


@pytest.fixture
async def client(anyio_backend: str, tls: ssl.SSLContext) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(trust_env=False, timeout=5.0, verify=tls) as http:
        yield http
