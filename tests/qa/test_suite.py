"""The suite format: every field parsed, every invalid form refused with the file, line, column and field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lexey_mcp.errors import LexeyInputError
from lexey_mcp.qa.parsing import MAX_DEPTH, MAX_SUITE_BYTES, MAX_VALUES, load_suite, parse_suite
from lexey_mcp.qa.suite import EXPECT_KEYS, Expect, SuiteError, Turn

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
        Turn("Our business is a SaaS company called Acme. We build project management tools.", Expect(), 3),
        Turn(
            "Add a knowledge article about pricing: Free (3 projects), Pro ($12/month), Enterprise (custom).",
            Expect(),
            4,
        ),
        Turn("Add these escalation rules: always escalate legal issues.", Expect(), 5),
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


def test_a_setup_step_is_a_string_or_a_turn_with_the_same_matchers() -> None:
    suite = parse_suite(
        "setup:\n"
        "  - 'Add a knowledge article about pricing: Pro is $12.'\n"
        "  - say: Always escalate refund requests over $100.\n"
        "    expect: {contains: [over $100], not_contains: Not applied, matches: 'rules? updated'}\n" + CASE
    )
    assert suite.setup == (
        Turn("Add a knowledge article about pricing: Pro is $12.", Expect(), 2),
        Turn(
            "Always escalate refund requests over $100.",
            Expect(contains=("over $100",), not_contains=("Not applied",), matches=re.compile("rules? updated")),
            3,
        ),
    )


def test_escalated_in_a_setup_step_is_refused_where_it_is_written() -> None:
    with pytest.raises(SuiteError) as refused:
        parse_suite("setup:\n  - say: Always escalate legal issues.\n    expect: {escalated: true}\n" + CASE, "s.yaml")
    assert str(refused.value).splitlines()[1].strip() == (
        "s.yaml:3:14: setup[0].expect.escalated: a setup step talks to the management agent, whose conversation "
        "never escalates: remove it"
    )


def test_expect_keys_are_the_fields_of_expect() -> None:
    assert EXPECT_KEYS == ("contains", "not_contains", "matches", "escalated", "outcome", "max_seconds")


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
    assert suite.setup == (Turn("Add a knowledge article about pricing: Pro is $12.", Expect(), 1),)
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
    pytest.param("setup: []\n" + CASE, "s.yaml:1:8: setup: must list at least one instruction", id="setup-empty"),
    pytest.param("setup: [ok, ~]\n" + CASE, "s.yaml:1:13: setup[1]: must be a string, not empty", id="setup-null"),
    pytest.param(
        "setup: [{expect: {contains: x}}]\n" + CASE,
        "s.yaml:1:9: setup[0]: missing key 'say' (the instruction)",
        id="setup-step-without-say",
    ),
    pytest.param(
        "setup: [{say: x, expect: {contain: y}}]\n" + CASE,
        "s.yaml:1:27: setup[0].expect.contain: unknown key 'contain' (did you mean 'contains'?)",
        id="setup-step-unknown-matcher",
    ),
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
    binary.write_bytes(b"cases:\n  - name: caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(SuiteError, match=r"binary\.yaml:2:14: not UTF-8: the byte 0xe9 cannot be decoded"):
        load_suite(str(binary))
    with pytest.raises(SuiteError, match="cannot read the suite: Is a directory"):
        load_suite(str(tmp_path))


def test_a_file_past_the_size_limit_is_refused_unparsed(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    huge.write_text(CASE + "#" * MAX_SUITE_BYTES, encoding="utf-8")
    with pytest.raises(SuiteError, match=r"huge\.yaml:1:1: the suite is larger than 1024 KiB: split it"):
        load_suite(str(huge))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!python/name:os.system ''", "the tag 'tag:yaml.org,2002:python/name:os.system' is not allowed"),
        ("!!python/object/apply:os.system [ls]", "the tag 'tag:yaml.org,2002:python/object/apply:os.system' is not"),
        ("!custom x", "the tag '!custom' is not allowed: a suite is plain data"),
        ("!!float abc", "must be true or false"),
        ("!!timestamp 2020-13-45", "must be true or false"),
    ],
)
def test_tags_outside_yamls_core_schema_are_refused_not_constructed(value: str, message: str) -> None:
    text = f"cases:\n  - name: a\n    turns: [{{say: hi, expect: {{escalated: {value}}}}}]\n"
    with pytest.raises(SuiteError) as caught:
        parse_suite(text, "t.yaml")
    assert f"t.yaml:3:43: cases[0].turns[0].expect.escalated: {message}" in str(caught.value)
    with pytest.raises(SuiteError, match=re.escape("turns[0].say: the tag 'tag:yaml.org,2002:binary' is not allowed")):
        parse_suite("cases:\n  - name: a\n    turns: [{say: !!binary aGk=}]\n")


def test_aliases_cannot_expand_a_small_file_into_a_huge_suite() -> None:
    # 100 strings in each turn, 100 turns in each case, 21 cases: over 200,000 values from 24 lines.
    text = "cases:\n  - name: c0\n    turns:\n      - say: hi\n        expect: {contains: &w ["
    text += ", ".join(f"w{i}" for i in range(100)) + "]}\n"
    text += "  - {name: c1, turns: &t [" + ", ".join(["{say: hi, expect: {contains: *w}}"] * 100) + "]}\n"
    text += "".join(f"  - {{name: c{i}, turns: *t}}\n" for i in range(2, 22))
    with pytest.raises(SuiteError) as caught:
        parse_suite(text, "bomb.yaml")
    (problem,) = caught.value.problems
    assert problem.message == f"the suite has more than {MAX_VALUES} values once its aliases are expanded"


@pytest.mark.parametrize("pattern", ["(" * 2000 + ")" * 2000, "(?:" * 5000 + "a" + ")" * 5000, "a{4294967295}"])
def test_a_regex_past_the_limits_of_re_is_a_problem_not_a_crash(pattern: str) -> None:
    with pytest.raises(SuiteError) as caught:
        parse_suite(f"cases:\n  - name: a\n    turns: [{{say: hi, expect: {{matches: '{pattern}'}}}}]\n", "r.yaml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.field) == (3, "cases[0].turns[0].expect.matches")
    assert problem.message == "is too deeply nested or repeats too many times for Python's re"


@pytest.mark.parametrize(
    "text", ["cases: " + "[" * 5000 + "]" * 5000, "cases:\n- " + "{a: " * 3000 + "1" + "}" * 3000, "- " * 2000 + "x"]
)
def test_nesting_past_the_limit_is_refused_where_it_starts(text: str) -> None:
    with pytest.raises(SuiteError) as caught:
        parse_suite(text, "deep.yaml")
    (problem,) = caught.value.problems
    assert problem.message == f"not valid YAML: nested more than {MAX_DEPTH} levels deep"
    assert problem.line in (1, 2)
    assert problem.column > MAX_DEPTH


def test_names_are_one_line_without_control_characters() -> None:
    with pytest.raises(SuiteError) as caught:
        parse_suite('name: "x\\e]0;title\\a"\ncases:\n  - name: "two\\nlines"\n    turns: [{say: hi}]\n', "n.yaml")
    assert str(caught.value).splitlines()[1:] == [
        "  n.yaml:1:7: name: must be one line, without control characters",
        "  n.yaml:3:11: cases[0].name: must be one line, without control characters",
    ]


def test_messages_stay_short_whatever_the_suite_holds() -> None:
    with pytest.raises(SuiteError) as caught:
        parse_suite("cases:\n  - " + "y" * 100_000 + "\n" + "  - 1\n" * 500, "big.yaml")
    message = str(caught.value)
    assert len(caught.value.problems) == 501
    assert len(message) < 5000
    assert "cases[0]: must be a mapping with the keys name, turns, expect, not 'yyyy" in message
    assert "… (100000 characters)" in message
    assert message.endswith("… and 481 more problems")


def test_a_character_yaml_refuses_is_placed_by_line_and_column() -> None:
    with pytest.raises(SuiteError, match=r"n\.yaml:3:12: not valid YAML: the character '\\x00' is not allowed"):
        parse_suite("cases:\n  - name: a\n    turns: \x00\n", "n.yaml")


def test_the_shipped_examples_parse() -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "suites"
    names = {p.name: load_suite(str(p)) for p in root.glob("*.yaml")}
    assert set(names) == {"acme-support.yaml", "fails-on-purpose.yaml", "refunds-over-100.yaml"}
    assert all(s.setup and s.cases for s in names.values())


def test_messages_are_checked_as_every_message_is() -> None:
    with pytest.raises(SuiteError) as caught:
        parse_suite('setup: ["ok", "bell \\a"]\ncases:\n  - {name: a, turns: [{say: "esc \\e[31m"}]}\n', "c.yaml")
    assert str(caught.value).splitlines()[1:] == [
        "  c.yaml:1:15: setup[1]: contains control characters; remove them.",
        "  c.yaml:3:29: cases[0].turns[0].say: contains control characters; remove them.",
    ]


# Pieces of YAML and of the suite format, and the tags, aliases and characters that crashed the parser before.
_PIECES = st.sampled_from(
    [
        *("cases:", "\n", "  ", "- ", "name: ", "turns: ", "say: ", "expect: ", "setup: ", "contains: ", "matches: "),
        *("escalated: ", "outcome: ", "max_seconds: ", "{", "}", "[", "]", ",", ":", "? ", "<<: ", "&a ", "*a", "'"),
        *("!!python/name:x ", "!!float ", "!!timestamp ", "!!binary ", "!!set ", "!x ", "x", "1", "1e999", ".nan"),
        *("~", "yes", "(", ")", "a+", "|", ">", "#", "---\n", "\t", "\x00", "\x1b", "\ufeff", "[" * 30, '"'),
    ]
)


# Values that are valid YAML but odd for a suite: foreign tags, tags their text does not fit, deep or huge things.
_ODD = st.sampled_from(
    [
        *("!!python/name:os.system ''", "!!python/object/apply:os.system [ls]", "!!float abc", "!!int 1.5", "!x y"),
        *("!!timestamp 2020-13-45", "!!binary aGk=", "!!set {a}", "!!null ''", ".inf", "-1", "1e400", "[]", "{}"),
        *(
            "'(((((((((('",
            "'a{99999999999}'",
            "'(?:' + 'a'",
            "'" + "(" * 2000 + ")" * 2000 + "'",
            "[" * 2000 + "]" * 2000,
        ),
        *('"\\e[2J"', '"a\\nb"', "'" + "x" * 5000 + "'", "&v [x, y]", "*v"),
    ]
)
_VALUE = st.one_of(_ODD, st.lists(_PIECES, max_size=6).map("".join))
# The suite's shape with any value in any field: what reaches the checker rather than stopping in PyYAML.
_SHAPED = st.builds(
    "cases:\n  - name: {}\n    turns:\n      - say: {}\n        expect: {{{}: {}}}\n    expect: {{{}: {}}}\n".format,
    _VALUE,
    _VALUE,
    st.sampled_from(EXPECT_KEYS),
    _VALUE,
    st.sampled_from(EXPECT_KEYS),
    _VALUE,
)


@pytest.mark.parametrize("value", ["!!timestamp ''", "!!float ''", "!!timestamp 2026-13-45", "!!int ''"])
def test_a_value_its_own_tag_refuses_is_a_problem_not_a_crash(value: str) -> None:
    """Found by the property test below: PyYAML's constructors fail on such values with IndexError/AttributeError."""
    text = f"cases:\n  - name: a\n    turns:\n      - say: hi\n    expect: {{escalated: {value}}}\n"
    with pytest.raises(SuiteError) as refused:
        parse_suite(text, "odd.yaml")
    assert "odd.yaml:5" in str(refused.value)
    assert "escalated" in str(refused.value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_SHAPED, st.lists(_PIECES, max_size=40).map("".join)))
def test_any_text_parses_or_is_refused_with_problems_never_a_crash(text: str) -> None:
    try:
        parse_suite(text, "any.yaml")
    except SuiteError as refused:
        problems = refused.problems
    else:
        return
    assert problems
    assert all(p.line >= 1 and p.column >= 1 for p in problems)
