"""Lifecycle: URLs and env, disconnect detection, quick shutdown with stalled streams, the blocking runner."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import anyio
import httpx2
import pytest

from lexey_mcp.sandbox import Fault, Sandbox, SandboxConfig, banner
from tests.waiting import wait_until

from .helpers import CUSTOMER, conversation, lexi_url

pytestmark = pytest.mark.anyio


async def test_urls_and_env(sb: Sandbox) -> None:
    assert sb.url == f"http://127.0.0.1:{sb.port}"
    assert sb.port > 0
    assert sb.base_url == sb.url + "/api/v1"
    assert sb.lexi_base_url == sb.url + "/functions/v1/api-gateway"
    assert sb.env() == {
        "LEXEY_BASE_URL": sb.base_url,
        "LEXI_BASE_URL": sb.lexi_base_url,
        "LEXEY_CUSTOMER_KEY": "lxc_sandbox_customer",
        "LEXEY_MANAGEMENT_KEY": "lxm_sandbox_management",
        "LEXI_API_KEY": "wbk_sandbox_lexi",
    }
    text = banner(sb)
    assert f"export LEXEY_BASE_URL={sb.base_url}" in text.splitlines()
    assert 'curl -X POST "$LEXEY_BASE_URL/customer/conversations"' in text


async def test_env_keys_work(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    env = sb.env()
    created = await client.post(
        f"{env['LEXEY_BASE_URL']}/customer/conversations",
        headers={"Authorization": f"Bearer {env['LEXEY_CUSTOMER_KEY']}"},
    )
    assert created.status_code == 201
    streamed = await client.post(
        f"{env['LEXI_BASE_URL']}/v1/lexi/chat/stream",
        headers={"Authorization": f"Bearer {env['LEXI_API_KEY']}"},
        json={"message": "hi"},
    )
    assert streamed.status_code == 200


async def test_two_sandboxes_and_deterministic_ids(client: httpx2.AsyncClient) -> None:
    async with Sandbox(SandboxConfig(delay=0, seed=7)) as first, Sandbox(SandboxConfig(delay=0, seed=7)) as second:
        assert first.port != second.port
        assert await conversation(client, first) == await conversation(client, second)
    async with Sandbox(SandboxConfig(delay=0, seed=7)) as again, Sandbox(SandboxConfig(delay=0, seed=8)) as other:
        assert await conversation(client, again) != await conversation(client, other)


async def test_url_before_start_raises() -> None:
    with pytest.raises(RuntimeError):
        _ = Sandbox().url


async def _stalled(client: httpx2.AsyncClient, sb: Sandbox, conversation_id: str) -> httpx2.Response:
    request = client.build_request(
        "POST",
        f"{sb.base_url}/customer/conversations/{conversation_id}/messages",
        headers=CUSTOMER,
        json={"message": "hi"},
    )
    return await client.send(request, stream=True)


async def test_client_close_is_seen_as_disconnect(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id = await conversation(client, sb)
    sb.inject(Fault(stall_after=1, stall_seconds=30))
    response = await _stalled(client, sb, conversation_id)
    first = await response.aiter_raw().__anext__()
    assert first.startswith(b"id: 1\n")
    assert sb.stats.open_streams == 1
    started = time.monotonic()
    await response.aclose()
    assert await sb.wait_for_stream_closed(0.5) == "disconnected"
    assert time.monotonic() - started < 0.5
    assert (sb.stats.streams_disconnected, sb.stats.open_streams, sb.stats.streams_completed) == (1, 0, 0)


async def test_cancelled_client_task_is_seen_as_disconnect(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    conversation_id = await conversation(client, sb)
    sb.inject(Fault(target="customer", drip_seconds=0.05, chunking="byte"))
    got_bytes = anyio.Event()

    async def reader() -> None:
        async with client.stream(
            "POST",
            f"{sb.base_url}/customer/conversations/{conversation_id}/messages",
            headers=CUSTOMER,
            json={"message": "hi"},
        ) as response:
            async for _ in response.aiter_raw():
                got_bytes.set()

    async with anyio.create_task_group() as group:
        group.start_soon(reader)
        await got_bytes.wait()
        group.cancel_scope.cancel()
    started = time.monotonic()
    assert await sb.wait_for_stream_closed(0.5) == "disconnected"
    assert time.monotonic() - started < 0.5
    assert sb.stats.open_streams == 0


async def test_wait_for_stream_closed(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    with pytest.raises(TimeoutError):
        await sb.wait_for_stream_closed(0.05)
    conversation_id = await conversation(client, sb)
    await client.post(
        f"{sb.base_url}/customer/conversations/{conversation_id}/messages", headers=CUSTOMER, json={"message": "hi"}
    )
    assert await sb.wait_for_stream_closed(10) == "completed"
    sb.inject(Fault(stall_after=0, stall_seconds=0.1))

    async def post() -> None:
        url = f"{sb.base_url}/customer/conversations/{conversation_id}/messages"
        await client.post(url, headers=CUSTOMER, json={"message": "hi"})

    async with anyio.create_task_group() as group:
        group.start_soon(post)
        await wait_until(lambda: sb.stats.open_streams > 0, "the stalled stream open")
        assert await sb.wait_for_stream_closed(1.0) == "completed"


async def test_shutdown_is_quick_with_a_stalled_stream(client: httpx2.AsyncClient) -> None:
    errors: list[Exception] = []
    async with anyio.create_task_group() as group:
        async with Sandbox(SandboxConfig(delay=0)) as sb:
            conversation_id = await conversation(client, sb)
            sb.inject(Fault(stall_after=1, stall_seconds=60))
            response = await _stalled(client, sb, conversation_id)

            async def drain() -> None:
                try:
                    await response.aread()
                except httpx2.TransportError as exc:
                    errors.append(exc)

            group.start_soon(drain)
            # an idle keep-alive connection too
            await client.post(f"{sb.base_url}/customer/conversations", headers=CUSTOMER)
            started = time.monotonic()
        elapsed = time.monotonic() - started
    assert elapsed < 0.5
    assert len(errors) == 1
    assert isinstance(errors[0], httpx2.RemoteProtocolError)
    assert sb.stats.streams_cancelled == 1
    assert sb.stats.open_streams == 0
    with pytest.raises(httpx2.ConnectError):
        await client.post(lexi_url(sb), json={"message": "hi"})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.e2e
async def test_python_m_runner_prints_exports_and_stops_on_sigint(client: httpx2.AsyncClient) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "lexey_mcp.sandbox", "--port", str(port), "--delay", "0"]
    async with await anyio.open_process(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None
        output = b""
        with anyio.fail_after(10):
            while b"curl" not in output:
                output += await process.stdout.receive()
        text = output.decode()
        assert f"export LEXEY_BASE_URL=http://127.0.0.1:{port}/api/v1" in text
        assert "export LEXI_API_KEY=wbk_sandbox_lexi" in text
        created = await client.post(
            f"http://127.0.0.1:{port}/api/v1/customer/conversations", headers={"Authorization": "Bearer lxc_x"}
        )
        assert created.status_code == 201
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(5):
            assert await process.wait() == 130  # 128 + SIGINT, as a shell expects


async def test_leaving_on_cancellation_still_shuts_down(client: httpx2.AsyncClient) -> None:
    started = time.monotonic()
    with anyio.move_on_after(0.3):
        async with Sandbox(SandboxConfig(delay=0)) as sb:
            conversation_id = await conversation(client, sb)
            sb.inject(Fault(stall_after=0, stall_seconds=60))
            await client.post(
                f"{sb.base_url}/customer/conversations/{conversation_id}/messages",
                headers=CUSTOMER,
                json={"message": "hi"},
            )
    assert time.monotonic() - started < 1.0
    assert sb.stats.open_streams == 0
    with pytest.raises(httpx2.ConnectError):
        await client.post(f"{sb.base_url}/customer/conversations", headers=CUSTOMER)


def _context_chain_ends(exc: BaseException) -> bool:
    """The `__context__` chain from `exc` ends (no exception is its own context, directly or not)."""
    seen: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None:
        if any(link is earlier for earlier in seen):
            return False
        seen.append(link)
        link = link.__context__
    return True


async def test_a_cancelled_sandbox_with_webhooks_leaves_an_exception_chain_that_ends() -> None:
    """Issue 19: the webhook sender handed the cancellation it was given to its task group, which raised it back,
    and the exit stack made it its own `__context__` (Python 3.11): the server's lifespan, an exit stack too, then
    looped forever on that chain, until Ctrl-C's deadline cut the clean-up (temporary directory left)."""
    sb = Sandbox(SandboxConfig(delay=0, webhook_url="http://127.0.0.1:9/webhooks/lexey"))
    with anyio.CancelScope() as scope:
        await sb.__aenter__()  # by hand, to see what its exit raises
        scope.cancel()
        try:
            await anyio.sleep_forever()
        except BaseException as cancelled:
            with pytest.raises(anyio.get_cancelled_exc_class()) as raised:
                await sb.__aexit__(type(cancelled), cancelled, cancelled.__traceback__)
            assert _context_chain_ends(raised.value)
            raise
