"""The report of a suite run: the JSON of `lexey-mcp test --json` and the structured result of `run_test_suite`."""

from __future__ import annotations

from pydantic import Field

from ..models import Schema

#: The `expectation` of a failure that is no expectation: the request itself failed (Lexey refused it, or the
#: connection broke), so the run could not finish. JUnit reports it as an `error`, not a `failure`.
REQUEST_FAILED = "request"


class Failure(Schema):
    """One expectation a reply did not meet."""

    turn: int = Field(description="1-based turn number.")
    expectation: str = Field(description="contains, not_contains, matches, escalated, outcome, max_seconds, request.")
    detail: str = Field(description="What was expected, and the part of the reply that failed it.")


class RunReport(Schema):
    passed: bool
    conversation_id: str | None
    seconds: float
    failures: list[Failure] = Field(default_factory=list)


class CaseReport(Schema):
    name: str
    passed: bool = Field(description="Every run passed.")
    pass_rate: float = Field(description="Passed runs / runs.")
    flaky: bool = Field(description="Some runs passed and some failed.")
    runs: list[RunReport]

    @property
    def median_seconds(self) -> float:
        times = sorted(r.seconds for r in self.runs)
        middle = len(times) // 2
        if not times:
            return 0.0
        return times[middle] if len(times) % 2 else (times[middle - 1] + times[middle]) / 2

    @property
    def first_failure(self) -> Failure | None:
        return next((f for r in self.runs for f in r.failures), None)


class SuiteReport(Schema):
    name: str | None = Field(description="The suite's name.")
    passed: bool = Field(description="Every run of every case passed.")
    setup: list[str] = Field(
        default_factory=list, description="The management agent's reply to each setup instruction, in order."
    )
    cases: list[CaseReport]
