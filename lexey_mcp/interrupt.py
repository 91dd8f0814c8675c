"""Ctrl-C ends every mode promptly: exit status 130, no traceback.

The first SIGINT raises KeyboardInterrupt (the command unwinds and `main` returns 130) and starts a deadline:
a clean-up that hangs (a thread blocked reading stdin cannot be cancelled) is cut short by exiting at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from types import FrameType

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


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    exit_soon()
    if _announcement is not None:
        os.write(2, _announcement)
    # What unwinding logs or warns of (cancelled requests, "Exception in ASGI application", a task the interrupt
    # kept from starting) is noise after a Ctrl-C.
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    raise KeyboardInterrupt
