"""`redact` runs a pattern only where the letters its matches begin with occur: the same result as running all."""

from __future__ import annotations

import random
import re
import sys

from lexey_mcp.redaction import _BEARER, _KEY_SHAPES, _LOWER_EXACT, REDACTED, _spellings, redact

KELVIN, LONG_S, DOTLESS_I, DOTTED_I = "\u212a", "\u017f", "\u0131", "\u0130"


def every_pattern(text: str, secrets: list[str]) -> str:
    """What `redact` gives without looking for the letters first."""
    for secret in secrets:
        if secret:
            text = _spellings(secret).sub(REDACTED, text)
    text = _KEY_SHAPES.sub(lambda m: f"{m.group(1)}_{REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def test_a_letter_taken_as_exact_has_no_other_case_insensitive_match_that_lowers_differently() -> None:
    letters = "".join(sorted(_LOWER_EXACT | set("lxcmwbkbearer")))
    pattern = re.compile(f"[{letters}]", re.IGNORECASE)
    odd = [c for c in map(chr, range(sys.maxunicode + 1)) if pattern.fullmatch(c) and c.lower() not in letters.lower()]
    assert odd == []


def test_redact_equals_running_every_pattern() -> None:
    rng = random.Random(7)
    secrets = ["lxc_Secret-Value_1", "sk_live_9", "iota/key+1", "Zebra%key", ""]
    pieces = [
        "lxc_",
        "LXM%5F",
        "wbk\\u005f",
        "Bearer ",
        "bearer\t",
        "\\n",
        "%2F",
        "secret-value_1",
        f"{LONG_S}k_live_9",
        f"{DOTLESS_I}ota%2fkey+1",
        f"{DOTTED_I}OTA/KEY+1",
        f"wb{KELVIN}_x",
        "zEBRA%25KEY",
        "Zebra%key",
        "abc",
        " ",
        "_",
        "9",
        "x",
        "\u00e9",
    ]
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        assert redact(text, secrets) == every_pattern(text, secrets), text


def test_spellings_that_lower_differently_are_still_redacted() -> None:
    assert redact(f"key {LONG_S}k_live_9 here", ["sk_live_9"]) == f"key {REDACTED} here"
    assert redact(f"wb{KELVIN}_abcdef", []) == f"wb{KELVIN}_{REDACTED}"
    assert redact(f"{DOTLESS_I}ota/key+1", ["iota/key+1"]) == REDACTED
