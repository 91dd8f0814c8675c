"""`matches`: a suite's regex searched in a reply in a child Python process, killed past a time limit.

Python's `re` cannot be interrupted and holds the GIL while it searches: a pattern that backtracks
catastrophically (`(a+)+$` on a long reply) would freeze the whole run, and through `run_test_suite` a
hosted server, for as long as it likes. The child costs a few tens of milliseconds, only for `matches`.

A time budget rather than a linear-time engine (google-re2): suites keep Python's regex syntax (lookarounds,
backreferences, which RE2 refuses), and no compiled dependency is added. The cost stays bounded per pattern: within
one suite run (`one_budget_per_pattern`), a pattern that ran out of time once is not searched again (its other
expectations fail at once), so 24 cases sharing a catastrophic pattern cost one time limit, not 24.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import anyio
from anyio.lowlevel import RunVar

#: The longest one search may take; a slower one fails its expectation.
MATCH_SECONDS = 2.0
#: Searches (child processes) at once in this process, whatever the number of runs or of tool calls.
MAX_SEARCHES = 4
_SEARCHES: RunVar[anyio.CapacityLimiter] = RunVar("lexey_mcp.qa.searches")

# Isolated (-I) and without site (-S): nothing but the standard library is imported, nothing from the environment.
_SEARCH = "import json, re, sys; p, f, t = json.load(sys.stdin); sys.stdout.write('1' if re.search(p, t, f) else '0')"


_timed_out: ContextVar[set[tuple[str, int]] | None] = ContextVar("lexey_mcp_qa_timed_out", default=None)


@contextmanager
def one_budget_per_pattern() -> Iterator[None]:
    """Within this block, a pattern that ran out of time is not searched again."""
    token = _timed_out.set(set())
    try:
        yield
    finally:
        _timed_out.reset(token)


async def search(pattern: re.Pattern[str], text: str, seconds: float = MATCH_SECONDS) -> bool | None:
    """Whether `pattern` occurs in `text`; None when the search did not finish within `seconds` (it is killed), or
    when the same pattern already ran out of time in this suite run."""
    spent = _timed_out.get()
    identity = (pattern.pattern, int(pattern.flags))
    if spent is not None and identity in spent:
        return None
    payload = json.dumps([pattern.pattern, pattern.flags, text]).encode()
    async with _limiter():
        with anyio.move_on_after(seconds):
            done = await anyio.run_process([sys.executable, "-I", "-S", "-c", _SEARCH], input=payload, check=False)
            if done.returncode == 0:
                return done.stdout == b"1"
    if spent is not None:
        spent.add(identity)
    return None


def _limiter() -> anyio.CapacityLimiter:
    """This event loop's limiter (a limiter belongs to one loop)."""
    try:
        return _SEARCHES.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(MAX_SEARCHES)
        _SEARCHES.set(limiter)
        return limiter
