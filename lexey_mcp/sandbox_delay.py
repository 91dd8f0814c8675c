"""The embedded sandbox's pause between streamed events, stated once: `SandboxConfig`, the server and every command
line option that sets it read it. Nothing heavy imported: the command line's help shows it before anything loads."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

#: Seconds between two events of a sandbox stream: slow enough to watch a reply stream in, fast enough for a demo.
DEFAULT_DELAY = 0.02


def add_delay_option(
    parser: argparse.ArgumentParser, flag: str = "--delay", help: str = "seconds between events"
) -> None:
    """The option that sets it: `--delay` of `sandbox`, `demo` and `test`; the server's `--sandbox-delay`."""
    parser.add_argument(flag, type=float, default=DEFAULT_DELAY, metavar="SECONDS", help=help)
