"""Waiting for a state nothing signals (a counter, a port, a file): poll it quickly until it holds, under a deadline
generous enough for a loaded machine. Tests never sleep a fixed time and then assert: they wait here.

The only sleeps in tests/ are these polls and fake peers whose slowness is what a test is about (each says so)."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable

import anyio

#: Generous: a condition that holds at all holds well within this on a 2-core machine running two CPU burners.
DEADLINE = 30.0
POLL = 0.005


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, *, within: float = DEADLINE, poll: float = POLL
) -> None:
    """Return as soon as `condition()` (plain or async) is true; fail naming `what` after `within` seconds."""
    with anyio.move_on_after(within):
        while True:
            holds = condition()
            if inspect.isawaitable(holds):
                holds = await holds
            if holds:
                return
            await anyio.sleep(poll)
    raise AssertionError(f"not within {within:g} s: {what}")


def wait_until_sync(condition: Callable[[], bool], what: str, *, within: float = DEADLINE, poll: float = POLL) -> None:
    """`wait_until` for code outside an event loop."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        time.sleep(poll)


async def sample_every(interval: float, sample: Callable[[], object]) -> None:
    """Call `sample()` every `interval` seconds until cancelled (a peak gauge: the largest value seen)."""
    while True:
        sample()
        await anyio.sleep(interval)


async def accepts(host: str, port: int) -> bool:
    """Whether something listens on `host:port` (a connection to it is accepted)."""
    try:
        stream = await anyio.connect_tcp(host, port)
    except OSError:
        return False
    await stream.aclose()
    return True
