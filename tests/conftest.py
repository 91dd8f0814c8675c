from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import anyio
import pytest

from lexey_mcp.config import Settings
from lexey_mcp.sandbox import Sandbox, SandboxConfig, settings_for
from tests.processes import upstream_env
from tests.waiting import wait_until

pytest_plugins = ["tests.spawn_guard", "pytester"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the long soak variants")
    parser.addoption(
        "--update-snapshots",
        action="store_true",
        help="rewrite tests/snapshots/ and lexey_mcp/server/output_schemas.json from what the code produces now",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="long soak variant: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sandbox(anyio_backend: str) -> AsyncIterator[Sandbox]:
    """A running sandbox with no delay between events."""
    async with Sandbox(SandboxConfig(delay=0.0)) as sb:
        yield sb


def sandbox_settings_for(sb: Sandbox, **overrides: Any) -> Settings:
    """Settings pointing at `sb`, with the distinctive test keys (the sandbox takes any key of the right type)."""
    base = Settings(_env_file=None, **{"max_retry_wait": 0.5, **overrides})
    pointed = settings_for(upstream_env(sb), base)
    # What a test overrides wins over the sandbox's values.
    return pointed.model_copy(update={name: getattr(base, name) for name in overrides})


async def cancel_once_streaming(
    sb: Sandbox, streams: int, call: Callable[..., Coroutine[Any, Any, Any]], *args: Any
) -> None:
    """Run `call(*args)`, cancel it once `sb` has `streams` streams open, and wait until every one is closed."""
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(call, *args)
            await wait_until(lambda: sb.stats.open_streams >= streams, f"{streams} upstream streams open")
            group.cancel_scope.cancel()
    with anyio.fail_after(10):
        while sb.stats.open_streams:
            await sb.wait_for_stream_closed(10)
