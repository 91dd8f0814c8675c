"""Ctrl-C (SIGINT) and SIGTERM end every mode promptly and quietly: exit status 128 + the signal's number (130,
143), no traceback, no temporary directory left behind.

No handler here raises: an exception raised from a signal handler lands in whatever code runs at that instant, an
import (a traceback), a finalizer ("Exception ignored in: …", and the process runs on), anyio's cancel-scope
bookkeeping ("Attempted to exit a cancel scope that isn't the current task's"). Instead:

- `install` (the entry point's first act, before anything heavy is imported): until a command's event loop runs,
  a signal exits at once. Nothing has been started yet that needs cleaning up.
- `run`: inside a command's event loop, a signal cancels the command, which unwinds through its own clean-up
  (listeners, temporary directories); the process exits with the status as soon as the loop has ended (the
  interpreter's own shutdown would wait for a thread blocked reading stdin, which nothing can cancel). A deadline
  cuts short a clean-up that hangs.
- The HTTP transport lets its uvicorn server shut down gracefully on its own handlers (`compat.UvicornServer`) and
  exits with the same status (`http_transport.serve`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import NoReturn, TypeVar, TypeVarTuple

T = TypeVar("T")
Args = TypeVarTuple("Args")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Seconds left for clean-up after a signal: generous, as a loaded machine needs them; only a clean-up that hangs
#: ever reaches it.
DEADLINE = 5.0


#: The first signal: the process exits with its status, whatever comes after it.
_first: int | None = None
#: A line a signal prints at once (set by a command that wants to say it stopped): printed when unwinding ends,
#: it could be cut by the deadline.
_announcement: bytes | None = None


def status(signum: int) -> int:
    """The exit status a shell expects of a process that `signum` stopped."""
    return 128 + signum


def announce(line: str) -> None:
    """Print `line` on stderr as soon as a signal arrives."""
    global _announcement
    _announcement = f"\n{line}\n".encode()


def install() -> None:
    """Make SIGINT and SIGTERM exit at once, quietly (call from the main thread, before the heavy imports)."""
    for signum in SIGNALS:
        signal.signal(signum, _exit_now)


def _exit_soon(code: int) -> None:
    """Exit with `code` in `DEADLINE` seconds, unless the process has ended by then."""
    timer = threading.Timer(DEADLINE, os._exit, (code,))
    timer.daemon = True
    timer.start()


def run(func: Callable[[*Args], Awaitable[T]], *args: *Args) -> T:
    """`anyio.run(func, *args)`, where SIGINT or SIGTERM cancels `func` and, once it has unwound, ends the process
    with exit status 128 + the signal's number."""
    import anyio  # here, not at the top: `install` runs before anything heavy is imported

    stopped_by, result = anyio.run(_cancelled_by_signals, func, args)
    if stopped_by is not None:
        exit_stopped(stopped_by)
    assert result is not None
    return result[0]


def exit_stopped(signum: int) -> NoReturn:
    """End the process a signal stopped, its clean-up done: at once, with the signal's status. Not through the
    interpreter's shutdown: that waits for threads (one may be blocked reading stdin), and late in it the signal
    handlers are the defaults again, so another Ctrl-C would end the process with its own status."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a reader gone away, a stream the host closed
            stream.flush()
    os._exit(status(signum))


async def _cancelled_by_signals(
    func: Callable[[*Args], Awaitable[T]], args: tuple[*Args]
) -> tuple[int | None, tuple[T] | None]:
    import asyncio  # as in `run`: not at the top

    import anyio

    loop = asyncio.get_running_loop()
    received: list[int] = []
    result: tuple[T] | None = None
    with anyio.CancelScope() as work:

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Runs between two bytecodes of whatever runs now, a loop stuck in blocking code too: the deadline starts
            # here, and the cancellation is left to the loop. A second signal changes nothing.
            if first_signal(signum):
                received.append(signum)
                _quiet()
                loop.call_soon_threadsafe(work.cancel)

        previous = {}
        try:
            for signum in SIGNALS:
                previous[signum] = signal.signal(signum, on_signal)
        except ValueError:  # not the main thread: signals are not ours to handle
            pass
        try:
            result = (await func(*args),)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    return (received[0] if received else None), result


def received() -> int | None:
    """The signal that is stopping the process, if one arrived: a command cleaning up after it can say which."""
    return _first


def first_signal(signum: int) -> bool:
    """Note that `signum` arrived and start the deadline; False when a signal came before (this one changes
    nothing: the process stops for the first, and exits with its status)."""
    global _first
    if _first is not None:
        return False
    _first = signum
    _exit_soon(status(signum))
    if _announcement is not None:
        os.write(2, _announcement)
    return True


def _quiet() -> None:
    # What unwinding logs or warns of (cancelled requests, "Exception in ASGI application", a task the interrupt
    # kept from starting) is noise after a signal.
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")


def _exit_now(signum: int, frame: FrameType | None) -> None:
    os._exit(status(_first if _first is not None else signum))
