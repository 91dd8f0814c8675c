"""The report of a suite run: the JSON of `lexey-mcp test --json` and the structured result of `run_test_suite`.

Fields added since the first release are optional (an earlier report still validates as a baseline)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..models import Schema

#: The `expectation` of a failure that is no expectation: the request itself failed (Lexey refused it, or the
#: connection broke), so the run could not finish. JUnit reports it as an `error`, not a `failure`.
REQUEST_FAILED = "request"

SetupOutcome = Literal["applied", "not applied", "expectation failed", "request failed"]
Change = Literal["new failure", "fixed", "still failing", "pass rate changed", "unchanged", "new case", "not run"]


class Failure(Schema):
    """One expectation a reply did not meet."""

    turn: int = Field(description="1-based turn number.")
    expectation: str = Field(description="contains, not_contains, matches, escalated, outcome, max_seconds, request.")
    detail: str = Field(description="What was expected, and the part of the reply that failed it.")


class Check(Schema):
    """One expectation checked at a turn (it failed when the run lists a failure of its kind at that turn)."""

    expectation: str = Field(description="Its kind: contains, not_contains, matches, escalated, outcome, max_seconds.")
    wanted: str = Field(description="What it asks, e.g. contains '$12'.")


class TurnReport(Schema):
    """One turn of a run's transcript."""

    say: str
    reply: str
    seconds: float
    escalated: bool = Field(description="The conversation was escalated after this turn.")
    checks: list[Check] = Field(default_factory=list)


class RunReport(Schema):
    passed: bool
    conversation_id: str | None
    seconds: float
    failures: list[Failure] = Field(default_factory=list)
    turns: list[TurnReport] = Field(default_factory=list, description="The transcript, turn by turn.")

    @property
    def escalated(self) -> bool:
        return any(t.escalated for t in self.turns)


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


class SetupStep(Schema):
    """One setup instruction, as sent, with the management agent's reply."""

    instruction: str
    reply: str
    outcome: SetupOutcome
    failures: list[Failure] = Field(default_factory=list, description="The step's unmet expectations.")


class CaseChange(Schema):
    """A case compared with the same case in an earlier report (--baseline)."""

    name: str
    change: Change
    pass_rate: float | None = Field(description="Now; null when the case did not run.")
    baseline_pass_rate: float | None = Field(description="In the earlier report; null when it was not there.")


class SuiteReport(Schema):
    name: str | None = Field(description="The suite's name.")
    passed: bool = Field(description="Every run of every case passed, and the run was not interrupted.")
    setup: list[SetupStep] = Field(
        default_factory=list, description="Each setup instruction sent, in order, with the management agent's reply."
    )
    cases: list[CaseReport]
    interrupted: str | None = Field(
        default=None, description="Why the run stopped before every run finished; the report has those that did."
    )
    baseline: list[CaseChange] | None = Field(
        default=None, description="Each case against an earlier report, when one was given."
    )

    @property
    def new_failures(self) -> list[str]:
        return [c.name for c in self.baseline or () if c.change == "new failure"]
