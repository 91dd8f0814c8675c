"""Tiny lexical matching used by the deterministic agents: tokens, a crude stemmer, keyword overlap."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[^\W_]+")


def wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOPWORDS = wordset(
    """a about above after again all also am an and any are as at be because been before being below between both
    but by can could did do does doing down during each few for from further had has have having he her here hers
    him his how i if in into is it its just me more most my no nor not now of off on once only or other our ours out
    over own same she should so some such than that the their them then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would you your yours hi hello
    hey please thanks thank tell know want like get need much many let give use using one"""
)
# Words that qualify an escalation phrase rather than name its subject ("refund requests over $100" is about refunds).
GENERIC = wordset(
    "issue issues problem problems request requests question questions case cases thing things matter matters"
)
SYNONYMS = {"cost": "pric", "fee": "pric", "expens": "pric", "cheap": "pric", "quot": "pric"}
PHRASES = {"how much": "pric", "money back": "refund"}
#: "my $500 back", "the 20 dollars back": asking for an amount back is asking for a refund.
_AMOUNT_BACK = re.compile(r"\b\d+(?: \d+)*(?: (?:dollars?|usd|bucks))? back\b")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def stem(word: str) -> str:
    """Plural/tense-insensitive key: refunds -> refund, pricing/prices -> pric, billing/bill -> bill."""
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        word = word[:-1]
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return SYNONYMS.get(word, word)


def keywords(text: str, *, drop_generic: bool = False) -> list[str]:
    """Stems of the meaningful words, in order, without repeats."""
    seen: dict[str, None] = {}
    lowered = " ".join(tokens(text))
    for phrase, key in PHRASES.items():
        if phrase in lowered:
            seen[key] = None
    if _AMOUNT_BACK.search(lowered):
        seen["refund"] = None
    for token in tokens(text):
        if token in STOPWORDS or token.isdigit() or len(token) < 3:
            continue
        if drop_generic and token in GENERIC:
            continue
        seen.setdefault(stem(token), None)
    return list(seen)


def phrase_matches(phrase: str, text: str) -> bool:
    """True when every key word of `phrase` (generic qualifiers and amounts ignored) occurs in `text`."""
    wanted = keywords(phrase, drop_generic=True) or keywords(phrase)
    if not wanted:
        return False
    present = set(keywords(text))
    return all(word in present for word in wanted)


def overlap(query: str, document: str) -> int:
    return len(set(keywords(query)) & set(keywords(document)))
