"""Amounts of money in escalation rules and customer messages: "refund requests over $100" escalates a $500 refund,
not a $20 one. "$100.50", "100.50 dollars", "USD 100.50" and "100.50 USD" all read as 100.50."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
#: An amount of dollars: "$100", "US$100", "USD 100", "100 USD", "100 dollars", "100 bucks".
AMOUNT = re.compile(
    rf"(?:(?:US)?\$|\bUSD)\s*(?P<before>{_NUMBER})|\b(?P<after>{_NUMBER})\s*(?:USD\b|dollars?\b|bucks\b)",
    re.IGNORECASE,
)
_TESTS: dict[str, Callable[[Decimal, Decimal], bool]] = {
    "over": operator.gt,
    "at least": operator.ge,
    "under": operator.lt,
    "at most": operator.le,
}
#: The words a rule may use, and the comparison each means.
_COMPARISONS = {
    "over": "over",
    "above": "over",
    "more than": "over",
    "greater than": "over",
    "exceeding": "over",
    "in excess of": "over",
    "at least": "at least",
    "under": "under",
    "below": "under",
    "less than": "under",
    "at most": "at most",
    "up to": "at most",
}
_THRESHOLD = re.compile(
    r"\s*\b(?:of\s+|for\s+)?(?P<op>"
    + "|".join(word.replace(" ", r"\s+") for word in _COMPARISONS)
    + r")\s+(?P<amount>"
    + AMOUNT.pattern
    + r")",
    re.IGNORECASE,
)


def _value(match: re.Match[str]) -> Decimal:
    return Decimal((match.group("before") or match.group("after")).replace(",", ""))


def amounts(text: str) -> list[Decimal]:
    """Every amount of dollars in `text`, in order."""
    return [_value(m) for m in AMOUNT.finditer(text)]


@dataclass(frozen=True)
class Threshold:
    """An escalation rule's amount condition: "over $100" is Threshold("over", 100)."""

    comparison: str
    amount: Decimal

    def met_by(self, text: str) -> bool:
        """Whether some amount in `text` meets it; a message without an amount does not."""
        test = _TESTS[self.comparison]
        return any(test(value, self.amount) for value in amounts(text))


def split_threshold(phrase: str) -> tuple[str, Threshold | None]:
    """A rule's subject and its amount condition: "refund requests over $100" → ("refund requests", over $100)."""
    match = _THRESHOLD.search(phrase)
    if match is None:
        return phrase, None
    name = _COMPARISONS[" ".join(match.group("op").lower().split())]
    subject = (phrase[: match.start()] + phrase[match.end() :]).strip()
    return subject, Threshold(name, _value(match))
