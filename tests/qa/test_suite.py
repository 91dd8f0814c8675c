"""The suite format: every field parsed, every invalid form refused with the file, line, column and field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lexey_mcp.errors import LexeyInputError
from lexey_mcp.qa.suite import Expect, SuiteError, load_suite, parse_suite

DESIGN_EXAMPLE = """\
name: Acme support                 # optional
setup:                             # optional: management instructions, run first, in order
  - "Our business is a SaaS company called Acme. We build project management tools."
  - "Add a knowledge article about pricing: Free (3 projects), Pro ($12/month), Enterprise (custom)."
  - "Add these escalation rules: always escalate legal issues."
cases:
  - name: pricing                  # unique within the suite
    turns:
      - say: "How much is the Pro plan?"
        expect:
          contains: ["$12"]        # every string must appear (case-insensitive)
          not_contains: ["sorry"]  # none may appear (case-insensitive)
          matches: "\\\\$\\\\d+"        # Python regex, searched in the reply
          escalated: false         # the conversation's status after this turn is / is not escalated
          outcome: complete        # complete (default) | error | partial
          max_seconds: 30
  - name: legal issue escalates
    turns:
      - say: "I need to talk about a legal issue with my contract."
    expect: {escalated: true}      # case-level: applies to the last turn
"""


def test_the_design_example_parses_field_by_field() -> None:
    suite = parse_suite(DESIGN_EXAMPLE, "acme.yaml")
    assert suite.name == "Acme support"
    assert suite.source == "acme.yaml"
    assert suite.setup == (
        "Our business is a SaaS company called Acme. We build project management tools.",
        "Add a knowledge article about pricing: Free (3 projects), Pro ($12/month), Enterprise (custom).",
        "Add these escalation rules: always escalate legal issues.",
    )
    pricing, legal = suite.cases
    assert (pricing.name, pricing.line) == ("pricing", 7)
    (turn,) = pricing.turns
    assert (turn.say, turn.line) == ("How much is the Pro plan?", 9)
    assert turn.expect == Expect(
        contains=("$12",),
        not_contains=("sorry",),
        matches=re.compile(r"\$\d+"),
        escalated=False,
        outcome="complete",
        max_seconds=30.0,
    )
    assert legal.name == "legal issue escalates"
    assert legal.turns[0].expect == Expect(escalated=True)


def test_json_is_valid_yaml_and_defaults_apply() -> None:
    text = json.dumps({"cases": [{"name": "hi", "turns": [{"say": "hello"}, {"say": "bye", "expect": {}}]}]})
    suite = parse_suite(text, "s.json")
    assert (suite.name, suite.setup) == (None, ())
    assert [t.expect for t in suite.cases[0].turns] == [Expect(), Expect()]
    assert Expect().outcome == "complete"


def test_one_string_stands_for_a_list_and_plain_scalars_are_their_text() -> None:
    suite = parse_suite(
        "setup: 'Add a knowledge article about pricing: Pro is $12.'\n"
        "cases:\n"
        "  - name: 2024\n"
        "    turns:\n"
        "      - say: yes\n"
        "        expect: {contains: $12, not_contains: [no, 3.50, ~x], outcome: partial, max_seconds: 1.5}\n"
    )
    assert suite.setup == ("Add a knowledge article about pricing: Pro is $12.",)
    case = suite.cases[0]
    assert (case.name, case.turns[0].say) == ("2024", "yes")
    assert case.turns[0].expect == Expect(
        contains=("$12",), not_contains=("no", "3.50", "~x"), outcome="partial", max_seconds=1.5
    )


def test_case_level_expect_merges_into_the_last_turn_only() -> None:
    suite = parse_suite(
        "cases:\n"
        "  - name: two turns\n"
        "    turns:\n"
        "      - say: hi\n"
        "        expect: {contains: [hello]}\n"
        "      - say: refund please\n"
        "        expect: {not_contains: [sorry]}\n"
        "    expect: {escalated: true, matches: hand}\n"
    )
    first, last = suite.cases[0].turns
    assert first.expect == Expect(contains=("hello",))
    assert last.expect == Expect(not_contains=("sorry",), escalated=True, matches=re.compile("hand"))


def test_anchors_and_aliases_work() -> None:
    suite = parse_suite(
        "cases:\n"
        "  - name: a\n"
        "    turns: [{say: hi, expect: &polite {not_contains: [stupid]}}]\n"
        "  - name: b\n"
        "    turns: [{say: hey, expect: *polite}]\n"
    )
    assert suite.cases[0].turns[0].expect == suite.cases[1].turns[0].expect == Expect(not_contains=("stupid",))


CASE = "cases:\n  - name: c\n    turns:\n      - say: hi\n"

INVALID = [
    pytest.param("", "s.yaml:1:1: the suite is empty", id="empty"),
    pytest.param("# nothing\n", "s.yaml:1:1: the suite is empty", id="only-a-comment"),
    pytest.param("cases: [\n", "s.yaml:2:1: not valid YAML", id="bad-yaml"),
    pytest.param("a: 1\n---\nb: 2\n", "s.yaml:2:1: not valid YAML: expected a single document", id="two-documents"),
    pytest.param("- 1\n", "s.yaml:1:1: must be a mapping with the keys name, setup, cases, not a list", id="list"),
    pytest.param("name: x\n", "s.yaml:1:1: missing key 'cases'", id="no-cases"),
    pytest.param(
        CASE + "setp: []\n",
        "s.yaml:5:1: setp: unknown key 'setp' (did you mean 'setup'?); allowed: name, setup, cases",
        id="unknown-suite-key",
    ),
    pytest.param("name: [x]\n" + CASE, "s.yaml:1:7: name: must be a string, not a list", id="name-list"),
    pytest.param("name: ''\n" + CASE, "s.yaml:1:7: name: must not be empty", id="name-empty"),
    pytest.param("setup: []\n" + CASE, "s.yaml:1:8: setup: must list at least one string", id="setup-empty"),
    pytest.param("setup: [ok, ~]\n" + CASE, "s.yaml:1:13: setup[1]: must be a string, not empty", id="setup-null"),
    pytest.param("setup: {a: b}\n" + CASE, "s.yaml:1:8: setup: must be a string, not a mapping", id="setup-map"),
    pytest.param("cases: []\n", "s.yaml:1:8: cases: must be a list of at least one case", id="cases-empty"),
    pytest.param("cases: {a: 1}\n", "s.yaml:1:8: cases: must be a list of at least one case", id="cases-map"),
    pytest.param(
        "cases: [3]\n", "s.yaml:1:9: cases[0]: must be a mapping with the keys name, turns, expect", id="case"
    ),
    pytest.param(
        "cases:\n  - turns: [{say: hi}]\n", "s.yaml:2:5: cases[0]: missing key 'name'", id="case-without-name"
    ),
    pytest.param("cases:\n  - name: a\n", "s.yaml:2:5: cases[0]: missing key 'turns'", id="case-without-turns"),
    pytest.param(
        "cases:\n  - name: a\n    turns: []\n",
        "s.yaml:3:12: cases[0].turns: must be a list of at least one turn",
        id="turns-empty",
    ),
    pytest.param(
        CASE + "    steps: 1\n",
        "s.yaml:5:5: cases[0].steps: unknown key 'steps'; allowed: name, turns, expect",
        id="unknown-case-key",
    ),
    pytest.param(
        CASE + "  - name: c\n    turns: [{say: again}]\n",
        "s.yaml:5:11: cases[1].name: 'c' is already a case (line 2)",
        id="duplicate-case-name",
    ),
    pytest.param(
        "cases:\n  - name: a\n    turns:\n      - expect: {}\n",
        "s.yaml:4:9: cases[0].turns[0]: missing key 'say'",
        id="turn-without-say",
    ),
    pytest.param(
        "cases:\n  - name: a\n    turns:\n      - say: '  '\n",
        "s.yaml:4:14: cases[0].turns[0].say: must not be empty",
        id="say-blank",
    ),
    pytest.param(
        "cases:\n  - name: a\n    turns:\n      - say: [hi]\n",
        "s.yaml:4:14: cases[0].turns[0].say: must be a string, not a list",
        id="say-list",
    ),
    pytest.param(
        "cases:\n  - name: a\n    turns:\n      - hi\n",
        "s.yaml:4:9: cases[0].turns[0]: must be a mapping with the keys say, expect, not 'hi'",
        id="turn-string",
    ),
    pytest.param(
        CASE + "        sya: hi\n",
        "s.yaml:5:9: cases[0].turns[0].sya: unknown key 'sya' (did you mean 'say'?); allowed: say, expect",
        id="unknown-turn-key",
    ),
    pytest.param(
        CASE + "        expect: [contains]\n",
        "s.yaml:5:17: cases[0].turns[0].expect: must be a mapping with the keys contains, not_contains",
        id="expect-list",
    ),
    pytest.param(
        CASE + "        expect: {contain: [x]}\n",
        "s.yaml:5:18: cases[0].turns[0].expect.contain: unknown key 'contain' (did you mean 'contains'?)",
        id="unknown-expect-key",
    ),
    pytest.param(
        CASE + "        expect: {contains: []}\n",
        "s.yaml:5:28: cases[0].turns[0].expect.contains: must list at least one string",
        id="contains-empty",
    ),
    pytest.param(
        CASE + "        expect: {contains: [{a: 1}]}\n",
        "s.yaml:5:29: cases[0].turns[0].expect.contains[0]: must be a string, not a mapping",
        id="contains-mapping",
    ),
    pytest.param(
        CASE + "        expect: {not_contains: ['']}\n",
        "s.yaml:5:33: cases[0].turns[0].expect.not_contains[0]: must not be empty",
        id="not-contains-empty-string",
    ),
    pytest.param(
        CASE + "        expect: {matches: '(('}\n",
        "s.yaml:5:27: cases[0].turns[0].expect.matches: is not a valid regular expression: missing ),",
        id="matches-bad-regex",
    ),
    pytest.param(
        CASE + "        expect: {matches: [a]}\n",
        "s.yaml:5:27: cases[0].turns[0].expect.matches: must be a string, not a list",
        id="matches-list",
    ),
    pytest.param(
        CASE + "        expect: {escalated: maybe}\n",
        "s.yaml:5:29: cases[0].turns[0].expect.escalated: must be true or false",
        id="escalated-not-bool",
    ),
    pytest.param(
        CASE + "        expect: {escalated: 1}\n",
        "s.yaml:5:29: cases[0].turns[0].expect.escalated: must be true or false",
        id="escalated-number",
    ),
    pytest.param(
        CASE + "        expect: {outcome: done}\n",
        "s.yaml:5:27: cases[0].turns[0].expect.outcome: must be one of complete, error, partial",
        id="outcome",
    ),
    pytest.param(
        CASE + "        expect: {max_seconds: 0}\n",
        "s.yaml:5:31: cases[0].turns[0].expect.max_seconds: must be a number of seconds greater than 0",
        id="max-seconds-zero",
    ),
    pytest.param(
        CASE + "        expect: {max_seconds: ten}\n",
        "s.yaml:5:31: cases[0].turns[0].expect.max_seconds: must be a number of seconds greater than 0",
        id="max-seconds-text",
    ),
    pytest.param(
        CASE + "        expect: {max_seconds: true}\n",
        "s.yaml:5:31: cases[0].turns[0].expect.max_seconds: must be a number of seconds greater than 0",
        id="max-seconds-bool",
    ),
    pytest.param(
        CASE + "        expect: {max_seconds: .inf}\n",
        "s.yaml:5:31: cases[0].turns[0].expect.max_seconds: must be a number of seconds greater than 0",
        id="max-seconds-infinite",
    ),
    pytest.param(
        CASE + "        expect: {escalated: false}\n    expect: {escalated: true}\n",
        "s.yaml:6:13: cases[0].expect.escalated: also set in the last turn's expect (line 4): set it in one place",
        id="case-and-turn-expect-clash",
    ),
    pytest.param(
        CASE + "    expect: {outcom: error}\n",
        "s.yaml:5:14: cases[0].expect.outcom: unknown key 'outcom' (did you mean 'outcome'?)",
        id="unknown-case-expect-key",
    ),
    pytest.param("name: a\nname: b\n" + CASE, "s.yaml:2:1: name: given twice (first on line 1)", id="duplicate-key"),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_suites_name_file_line_and_field(text: str, message: str) -> None:
    with pytest.raises(SuiteError) as caught:
        parse_suite(text, "s.yaml")
    assert isinstance(caught.value, LexeyInputError)
    assert message in str(caught.value)
    assert len(caught.value.problems) == 1, str(caught.value)
    assert "validation error" not in str(caught.value).lower()  # our voice, not a pydantic dump


def test_every_problem_is_reported_at_once_in_line_order() -> None:
    text = "setp: x\ncases:\n  - name: a\n    turns: [{say: hi, expect: {escalated: yes please}}]\n  - name: a\n"
    with pytest.raises(SuiteError) as caught:
        parse_suite(text, "many.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0] == "Invalid test suite (4 problems):"
    assert [line.split(": ")[0].strip() for line in lines[1:]] == [
        "many.yaml:1:1",
        "many.yaml:4:43",
        "many.yaml:5:5",
        "many.yaml:5:11",
    ]


def test_load_suite_reads_a_file_and_refuses_an_unreadable_one(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(CASE, encoding="utf-8")
    assert load_suite(str(path)).source == str(path)
    with pytest.raises(SuiteError, match=r"missing\.yaml:1:1: cannot read the suite: No such file or directory"):
        load_suite(str(tmp_path / "missing.yaml"))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00cases")
    with pytest.raises(SuiteError, match="cannot read the suite"):
        load_suite(str(binary))


def test_the_shipped_examples_parse() -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "suites"
    names = {p.name: load_suite(str(p)) for p in root.glob("*.yaml")}
    assert set(names) == {"acme-support.yaml", "fails-on-purpose.yaml"}
    assert all(s.setup and s.cases for s in names.values())


def test_messages_are_checked_as_every_message_is() -> None:
    with pytest.raises(SuiteError) as caught:
        parse_suite('setup: ["ok", "bell \\a"]\ncases:\n  - {name: a, turns: [{say: "esc \\e[31m"}]}\n', "c.yaml")
    assert str(caught.value).splitlines()[1:] == [
        "  c.yaml:1:15: setup[1]: contains control characters; remove them.",
        "  c.yaml:3:29: cases[0].turns[0].say: contains control characters; remove them.",
    ]
