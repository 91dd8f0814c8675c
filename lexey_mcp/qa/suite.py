"""The suite format: parsed from YAML (JSON is valid YAML) and checked before anything is sent.

    name: Acme support                 # optional
    setup:                             # optional management instructions, in order
      - "Add a knowledge article about pricing: …"
      - say: "Always escalate refund requests over $100."
        expect: {contains: ["refund requests over $100"]}   # the same matchers as a turn; unmet: nothing runs
    cases:
      - name: pricing                  # unique
        turns:
          - say: "How much is the Pro plan?"
            expect: {contains: ["$12"], not_contains: ["sorry"], matches: "\\$\\d+", escalated: false,
                     outcome: complete, max_seconds: 30}
        expect: {escalated: false}     # case-level: merged into the last turn's expectations

Every problem is reported with the file, the line and column, and the field (`cases[0].turns[1].expect.contains`),
all of them at once (`parsing.py` reads and checks a suite into these types).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Literal

from ..errors import LexeyInputError

Outcome = Literal["complete", "error", "partial"]
OUTCOMES: tuple[Outcome, ...] = ("complete", "error", "partial")

SUITE_KEYS = ("name", "setup", "cases")
CASE_KEYS = ("name", "turns", "expect")
TURN_KEYS = ("say", "expect")

#: Line breaks, tabs and every other C0 or C1 control character: none in a name, none shown raw on a terminal.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Problems listed in the message of a `SuiteError` (all are kept in `problems`).
SHOWN_PROBLEMS = 20


@dataclass(frozen=True)
class Expect:
    """What one reply must satisfy. `outcome` is always checked (default complete); the rest only when set."""

    contains: tuple[str, ...] = ()
    not_contains: tuple[str, ...] = ()
    matches: re.Pattern[str] | None = None
    escalated: bool | None = None
    outcome: Outcome = "complete"
    max_seconds: float | None = None


EXPECT_KEYS = tuple(f.name for f in dataclasses.fields(Expect))


@dataclass(frozen=True)
class Turn:
    say: str
    expect: Expect
    line: int


@dataclass(frozen=True)
class Case:
    name: str
    turns: tuple[Turn, ...]
    line: int


@dataclass(frozen=True)
class Suite:
    cases: tuple[Case, ...]
    name: str | None = None
    setup: tuple[Turn, ...] = ()
    source: str = "<suite>"


@dataclass(frozen=True)
class Problem:
    line: int
    column: int
    field: str
    message: str

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}:{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SuiteError(LexeyInputError):
    """An invalid suite: every problem found, each with the file, line, column and field."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.line, p.column))
        lines = [p.render(source) for p in self.problems[:SHOWN_PROBLEMS]]
        if len(self.problems) > SHOWN_PROBLEMS:
            lines.append(f"… and {len(self.problems) - SHOWN_PROBLEMS} more problems")
        count = len(self.problems)
        head = "Invalid test suite" if count == 1 else f"Invalid test suite ({count} problems)"
        super().__init__(f"{head}:\n" + "\n".join(f"  {line}" for line in lines))
