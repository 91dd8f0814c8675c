"""The conversations a test suite's runs make, marked in the event store (`run_test_suite`, `lexey-mcp test`), so the
escalations they cause are listed as a test run's, not a customer's."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ..observability.logs import ThrottledLog
from .model import TestMark
from .store import EventStore, EventStoreUnavailable

logger = logging.getLogger("lexey_mcp.events")

#: A store that cannot keep a test run's marks says so at most once a minute, however many runs a suite makes.
_MARKS_LOST = ThrottledLog(logger, 60.0)


def marking_test_runs(store: Callable[[], EventStore], suite: str) -> Callable[[str, str], Awaitable[None]]:
    """Marks each conversation a run of `suite` makes (its case's name, the conversation's id) as the suite's in the
    store `store()` returns, so the escalations it causes are listed as a test run's, on every replica sharing the
    store. A mark that cannot be kept is logged; the run goes on."""

    async def mark(case: str, conversation_id: str) -> None:
        try:
            await store().mark(conversation_id, TestMark(suite=suite, case=case))
        except EventStoreUnavailable as exc:
            _MARKS_LOST.log(logging.WARNING, "escalations from a test run cannot be marked as its: %s", exc)

    return mark
