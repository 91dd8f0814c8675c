"""`matches`: a suite's regex searched in a reply in a child Python process, killed past a time limit.

Python's `re` cannot be interrupted and holds the GIL while it searches: a pattern that backtracks
catastrophically (`(a+)+$` on a long reply) would freeze the whole run, and through `run_test_suite` a
hosted server, for as long as it likes. The child costs a few tens of milliseconds, only for `matches`.
"""

from __future__ import annotations

import json
import re
import sys

import anyio
from anyio.lowlevel import RunVar

#: The longest one search may take; a slower one fails its expectation.
MATCH_SECONDS = 2.0
#: Searches (child processes) at once in this process, whatever the number of runs or of tool calls.
MAX_SEARCHES = 4
_SEARCHES: RunVar[anyio.CapacityLimiter] = RunVar("lexey_mcp.qa.searches")

# Isolated (-I) and without site (-S): nothing but the standard library is imported, nothing from the environment.
_SEARCH = "import json, re, sys; p, f, t = json.load(sys.stdin); sys.stdout.write('1' if re.search(p, t, f) else '0')"


async def search(pattern: re.Pattern[str], text: str, seconds: float = MATCH_SECONDS) -> bool | None:
    """Whether `pattern` occurs in `text`; None when the search did not finish within `seconds` (it is killed)."""
    payload = json.dumps([pattern.pattern, pattern.flags, text]).encode()
    async with _limiter():
        with anyio.move_on_after(seconds):
            done = await anyio.run_process([sys.executable, "-I", "-S", "-c", _SEARCH], input=payload, check=False)
            if done.returncode == 0:
                return done.stdout == b"1"
    return None


def _limiter() -> anyio.CapacityLimiter:
    """This event loop's limiter (a limiter belongs to one loop)."""
    try:
        return _SEARCHES.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(MAX_SEARCHES)
        _SEARCHES.set(limiter)
        return limiter
