"""The tiers stay honest: tests/spawn_guard.py fails a test that starts a process unless it is marked e2e."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # it runs pytest in a process of its own

PROBES = """
import asyncio
import subprocess
import sys

import pytest


def test_in_memory():
    assert sum([1, 2]) == 3


def test_popen_unmarked():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_asyncio_unmarked():
    async def start():
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        await process.wait()

    asyncio.run(start())


@pytest.fixture
def child():
    with subprocess.Popen([sys.executable, "-c", "pass"]) as process:
        yield process


def test_fixture_unmarked(child):
    assert child.pid


@pytest.mark.e2e
def test_popen_marked():
    subprocess.run([sys.executable, "-c", "pass"], check=True)
"""


def test_a_process_started_by_an_unmarked_test_is_an_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))  # for `tests.spawn_guard`
    pytester.makeconftest('pytest_plugins = ["tests.spawn_guard"]\n')
    pytester.makeini("[pytest]\nmarkers =\n    e2e: end-to-end tests that start processes\n")
    pytester.makepyfile(test_probes=PROBES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=5, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_popen_unmarked*",
            "*test_popen_unmarked is not marked e2e but started 1 process(es), first: *python* -c pass*",
        ]
    )
    errors = {line.split("::")[1].split()[0] for line in result.stdout.lines if line.startswith("ERROR ")}
    assert errors == {"test_popen_unmarked", "test_asyncio_unmarked", "test_fixture_unmarked"}
