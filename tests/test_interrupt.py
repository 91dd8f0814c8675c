"""`interrupt.run`: Ctrl-C cancels a command, which unwinds through its clean-up and exits 130; a stuck one is cut off
in time."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType

import anyio
import anyio.lowlevel
import pytest

from lexey_mcp import interrupt
from tests.processes import clean_env

pytestmark = pytest.mark.e2e

COMMAND = """
import sys, time, anyio
from lexey_mcp import interrupt

async def command(mode):
    print("ready", flush=True)
    if mode == "blocked":
        time.sleep(10)  # the event loop itself is stuck: no cancellation can reach the command
    try:
        await anyio.sleep(10)
    finally:
        print("cleaned up", file=sys.stderr, flush=True)

interrupt.install()
interrupt.run(command, sys.argv[1])
"""


def interrupted(mode: str) -> tuple[int, str, float]:
    """Exit status, stderr and seconds from Ctrl-C to exit of COMMAND in `mode`."""
    with subprocess.Popen(
        [sys.executable, "-c", COMMAND, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env()
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(0.2)  # inside the sleep
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        return proc.returncode, err.decode(), time.monotonic() - start


def test_ctrl_c_cancels_the_command_which_cleans_up_and_exits_130() -> None:
    status, err, _ = interrupted("waiting")
    assert status == 130
    assert err == "cleaned up\n"  # no traceback, no "Attempted to exit a cancel scope…"


def test_ctrl_c_cuts_off_a_command_stuck_in_blocking_code() -> None:
    status, err, seconds = interrupted("blocked")
    assert status == 130
    assert seconds < interrupt.DEADLINE + 3  # not the 10 s the loop is stuck for
    assert "Traceback" not in err


def test_an_error_comes_out_as_it_was_raised_and_the_previous_handler_is_back() -> None:
    def mine(signum: int, frame: FrameType | None) -> None:
        raise AssertionError("not expected to be called")

    async def failing() -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("bad input")

    async def fine(value: int) -> int:
        await anyio.lowlevel.checkpoint()
        return value * 2

    before = signal.signal(signal.SIGINT, mine)
    try:
        with pytest.raises(ValueError, match="bad input"):  # not wrapped in an exception group
            interrupt.run(failing)
        assert signal.getsignal(signal.SIGINT) is mine
        assert interrupt.run(fine, 21) == 42
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, before)
