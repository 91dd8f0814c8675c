"""Ctrl-C ends every mode promptly: exit status 130, no traceback.

The first SIGINT starts a deadline: a clean-up that hangs (a thread blocked reading stdin cannot be cancelled) is
cut short by exiting at once. Outside a command's event loop it raises KeyboardInterrupt (`main` returns 130). Inside
one (`run`) it cancels the command instead, which unwinds through its own clean-up, and KeyboardInterrupt is raised
once the loop has ended: raised from the handler it would land in whatever code runs at that instant, inside
anyio's cancel-scope bookkeeping too ("Attempted to exit a cancel scope that isn't the current task's").
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import warnings
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import TypeVar, TypeVarTuple

import anyio

T = TypeVar("T")
Args = TypeVarTuple("Args")

EXIT_INTERRUPTED = 130
#: Seconds left for clean-up after Ctrl-C.
DEADLINE = 0.9


#: A line a Ctrl-C prints at once (set by a command that wants to say it stopped): printed when unwinding ends,
#: it could be cut by the deadline.
_announcement: bytes | None = None


def announce(line: str) -> None:
    """Print `line` on stderr as soon as Ctrl-C is pressed."""
    global _announcement
    _announcement = f"\n{line}\n".encode()


def install() -> None:
    """Make SIGINT raise KeyboardInterrupt and start the deadline (call from the main thread)."""
    signal.signal(signal.SIGINT, _on_sigint)


def exit_soon(status: int = EXIT_INTERRUPTED) -> None:
    """Exit with `status` in `DEADLINE` seconds, unless the process has ended by then."""
    timer = threading.Timer(DEADLINE, os._exit, (status,))
    timer.daemon = True
    timer.start()


def run(func: Callable[[*Args], Awaitable[T]], *args: *Args) -> T:
    """`anyio.run(func, *args)`, where Ctrl-C cancels `func` and raises KeyboardInterrupt once it has unwound."""
    interrupted, result = anyio.run(_cancelled_by_ctrl_c, func, args)
    if interrupted:
        raise KeyboardInterrupt
    assert result is not None
    return result[0]


async def _cancelled_by_ctrl_c(
    func: Callable[[*Args], Awaitable[T]], args: tuple[*Args]
) -> tuple[bool, tuple[T] | None]:
    loop = asyncio.get_running_loop()
    pressed: list[bool] = []
    result: tuple[T] | None = None
    with anyio.CancelScope() as work:

        def on_sigint(signum: int, frame: FrameType | None) -> None:
            # Runs between two bytecodes of whatever runs now, a loop stuck in blocking code too: the deadline starts
            # here, and the cancellation is left to the loop. A second Ctrl-C changes nothing.
            if not pressed:
                pressed.append(True)
                _stopping()
                loop.call_soon_threadsafe(work.cancel)

        try:
            previous = signal.signal(signal.SIGINT, on_sigint)
        except ValueError:  # not the main thread: Ctrl-C is not ours to handle
            previous = None
        try:
            result = (await func(*args),)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
    return bool(pressed), result


def _stopping() -> None:
    exit_soon()
    if _announcement is not None:
        os.write(2, _announcement)
    # What unwinding logs or warns of (cancelled requests, "Exception in ASGI application", a task the interrupt
    # kept from starting) is noise after a Ctrl-C.
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _stopping()
    raise KeyboardInterrupt
