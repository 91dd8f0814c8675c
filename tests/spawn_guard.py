"""Keeps the two test tiers honest: a test that starts a process (directly, through asyncio or anyio, or in one of its
fixtures) must be marked `e2e`, so `pytest -m "not e2e"` stays the in-memory loop. Python's audit hooks see every
process start; the guard turns one in an unmarked test into an error on that test.

Plain Python only (no lexey_mcp import): tests/test_tiers.py loads it into a bare pytest run of its own."""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

import pytest

# Every way CPython starts a process raises one of these (asyncio and anyio go through subprocess.Popen).
SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.posix_spawn", "os.fork", "os.forkpty", "os.spawn"})


class SpawnGuard:
    def __init__(self) -> None:
        self.current: str | None = None
        self.started: dict[str, list[str]] = {}
        sys.addaudithook(self._audit)  # an audit hook cannot be removed: it stays idle outside a test

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event in SPAWN_EVENTS and self.current is not None:
            what = args[1] if event == "subprocess.Popen" else args[0] if args else event
            self.started.setdefault(self.current, []).append(
                " ".join(map(str, what)) if isinstance(what, list) else str(what)
            )

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        self.current = item.nodeid
        try:
            return (yield)
        finally:
            self.current = None
            self.started.pop(item.nodeid, None)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report: pytest.TestReport = yield
        started = self.started.get(item.nodeid)
        if call.when == "teardown" and started and item.get_closest_marker("e2e") is None:
            report.outcome = "failed"
            report.longrepr = (
                f"{item.nodeid} is not marked e2e but started {len(started)} process(es), first: {started[0][:200]}\n"
                "Mark it `pytest.mark.e2e` (the process is the point), or run it in memory: Client(server), "
                "an ASGI transport, the sandbox in-process."
            )
        return report


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SpawnGuard(), "spawn-guard")
