"""A suite run against an earlier report (`lexey-mcp test --baseline OLD.json`, `run_test_suite`'s baseline): each
case a new failure, fixed, still failing, or with a changed pass rate. Only the earlier report's case names and
pass rates are read, so a report from any version of lexey-mcp serves."""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from ..errors import LexeyInputError
from .report import CaseChange, Change, SuiteReport


class _EarlierCase(BaseModel):
    name: str
    pass_rate: float


class _Earlier(BaseModel):
    cases: list[_EarlierCase]


def read_baseline(text: str | bytes, source: str = "the baseline") -> dict[str, float]:
    """Each case's pass rate in an earlier JSON report; `LexeyInputError` naming what is wrong otherwise."""
    try:
        earlier = _Earlier.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        raise LexeyInputError(
            f"{source} is not a lexey-mcp JSON report (from `lexey-mcp test --json`): {where}: {first['msg']}"
        ) from None
    return {case.name: case.pass_rate for case in earlier.cases}


def _change(now: float | None, before: float | None) -> Change:
    if now is None:
        return "not run"
    if before is None:
        return "new failure" if now < 1 else "new case"
    if now < 1 <= before:
        return "new failure"
    if before < 1 <= now:
        return "fixed"
    if now != before:
        return "pass rate changed"
    return "still failing" if now < 1 else "unchanged"


def compare(report: SuiteReport, baseline: dict[str, float]) -> SuiteReport:
    """`report` with each case's change against `baseline` (case name → pass rate): the cases of `report` in order,
    then those only the baseline has ("not run"). A case new since the baseline that fails is a new failure."""
    rates: dict[str, float | None] = {case.name: case.pass_rate for case in report.cases}
    names = [*rates, *(name for name in baseline if name not in rates)]
    changes = [
        CaseChange(
            name=name,
            change=_change(rates.get(name), baseline.get(name)),
            pass_rate=rates.get(name),
            baseline_pass_rate=baseline.get(name),
        )
        for name in names
    ]
    return report.model_copy(update={"baseline": changes})
