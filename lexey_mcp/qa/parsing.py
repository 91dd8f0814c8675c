"""Reading a suite: YAML (JSON is valid YAML) composed with its positions kept, bounded in size, depth and values,
then checked into a `Suite` with every problem found at once, each with the file, line, column and field."""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field
from typing import Any, cast

import yaml

from ..errors import LexeyInputError
from ..validation import check_message
from .suite import (
    CASE_KEYS,
    CONTROL,
    EXPECT_KEYS,
    OUTCOMES,
    SUITE_KEYS,
    TURN_KEYS,
    Case,
    Expect,
    Problem,
    Suite,
    SuiteError,
    Turn,
)

#: A suite file larger than this is refused before it is parsed (PyYAML reads about 100 KB a second).
MAX_SUITE_BYTES = 1024 * 1024
#: Values checked, counting each use of an alias: a few aliases must not turn a small file into millions of turns.
MAX_VALUES = 100_000
#: Levels of nesting a suite may use (it needs 7); PyYAML composes recursively, so a deeper file would crash it.
MAX_DEPTH = 20

#: The tags a value may carry: YAML's core schema. Anything else (`!!python/…`, `!!binary`, `!custom`) is refused.
CORE_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp", "seq", "map")
)


class _TooLarge(Exception):
    """Raised by the checker past MAX_VALUES: the walk stops there."""


@dataclass
class _Checker:
    """Walks the composed YAML node tree (which keeps every node's position) and collects problems."""

    problems: list[Problem] = field(default_factory=list)
    values: int = 0

    def problem(self, node: yaml.Node, path: str, message: str) -> None:
        mark = node.start_mark
        self.problems.append(Problem(mark.line + 1, mark.column + 1, path, message))

    def visit(self, node: yaml.Node, path: str) -> bool:
        """Count a value (each alias use counts again); False, with a problem, when its tag is not plain data."""
        self.values += 1
        if self.values > MAX_VALUES:
            self.problem(node, path, f"the suite has more than {MAX_VALUES} values once its aliases are expanded")
            raise _TooLarge
        if node.tag in CORE_TAGS:
            return True
        self.problem(node, path, f"the tag {_clip(node.tag)} is not allowed: a suite is plain data")
        return False

    def mapping(self, node: yaml.Node, path: str, allowed: tuple[str, ...]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """The mapping's entries by key (key node, value node); unknown and repeated keys are problems."""
        if not self.visit(node, path):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, path, f"must be a mapping with the keys {', '.join(allowed)}, not {_kind(node)}")
            return {}
        entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            where = f"{path}.{key}" if path and key else (key or path)
            if not isinstance(key, str) or key not in allowed:
                shown = _clip(key) if isinstance(key, str) else _kind(key_node)
                close = difflib.get_close_matches(key, allowed, n=1) if isinstance(key, str) else []
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.problem(key_node, where, f"unknown key {shown}{hint}; allowed: {', '.join(allowed)}")
            elif key in entries:
                first = entries[key][0].start_mark.line + 1
                self.problem(key_node, where, f"given twice (first on line {first})")
            else:
                entries[key] = (key_node, value_node)
        return entries

    def text(self, node: yaml.Node, path: str, *, message: bool = False, label: bool = False) -> str | None:
        """A non-empty string. Any plain scalar counts as its text (`contains: [yes]` means the word "yes").
        `message`: it is sent upstream, so it must pass the checks every message passes. `label`: it names a suite
        or case on a terminal, in a table and in JUnit, so it is one line without control characters."""
        if not self.visit(node, path):
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            self.problem(node, path, f"must be a string, not {_kind(node)}")
            return None
        if not node.value.strip():
            self.problem(node, path, "must not be empty")
            return None
        if label and CONTROL.search(node.value):
            self.problem(node, path, "must be one line, without control characters")
            return None
        if message:
            try:
                check_message(node.value)
            except LexeyInputError as exc:
                self.problem(node, path, str(exc).removeprefix("message "))
                return None
        return str(node.value)

    def texts(self, node: yaml.Node, path: str, *, message: bool = False) -> tuple[str, ...]:
        """A list of non-empty strings, or one string standing for a list of one."""
        if isinstance(node, yaml.SequenceNode):
            if not self.visit(node, path):
                return ()
            if not node.value:
                self.problem(node, path, "must list at least one string")
            values = [self.text(item, f"{path}[{i}]", message=message) for i, item in enumerate(node.value)]
            return tuple(v for v in values if v is not None)
        value = self.text(node, path, message=message)
        return (value,) if value is not None else ()

    def items(self, node: yaml.Node, path: str, what: str) -> list[yaml.Node]:
        """The items of a non-empty list (of `what`); none, with a problem, for anything else."""
        if not self.visit(node, path):
            return []
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.problem(node, path, f"must be a list of at least one {what}")
            return []
        return list(node.value)

    def scalar(self, node: yaml.Node, path: str) -> Any:
        """The scalar's value as YAML's core schema reads it; None for anything else, or for a value its own tag
        refuses (`!!float abc`), so that the caller reports what it expected."""
        if not self.visit(node, path) or not isinstance(node, yaml.ScalarNode):
            return None
        try:
            return yaml.constructor.SafeConstructor().construct_object(node)
        except Exception:  # a tag's constructor refuses a bad value any way it likes: `!!timestamp ''` IndexError, …
            return None

    def expect(self, node: yaml.Node, path: str) -> dict[str, Any]:
        """The expectations given (only the keys present), checked one by one."""
        given: dict[str, Any] = {}
        for key, (_, value) in self.mapping(node, path, EXPECT_KEYS).items():
            where = f"{path}.{key}"
            if key in ("contains", "not_contains"):
                given[key] = self.texts(value, where)
            elif key == "matches":
                pattern = self.text(value, where)
                if pattern is not None:
                    try:
                        given[key] = re.compile(pattern)
                    except re.error as exc:
                        self.problem(value, where, f"is not a valid regular expression: {exc}")
                    except (RecursionError, OverflowError):  # what `re` raises past its own limits
                        self.problem(value, where, "is too deeply nested or repeats too many times for Python's re")
            elif key == "escalated":
                flag = self.scalar(value, where)
                if isinstance(flag, bool):
                    given[key] = flag
                else:
                    self.problem(value, where, "must be true or false")
            elif key == "outcome":
                outcome = self.scalar(value, where)
                if outcome in OUTCOMES:
                    given[key] = outcome
                else:
                    self.problem(value, where, f"must be one of {', '.join(OUTCOMES)}")
            else:
                seconds = self.scalar(value, where)
                if isinstance(seconds, int | float) and not isinstance(seconds, bool) and 0 < seconds < float("inf"):
                    given[key] = float(seconds)
                else:
                    self.problem(value, where, "must be a number of seconds greater than 0")
        return given

    def case(self, node: yaml.Node, path: str) -> tuple[str | None, list[Turn]]:
        entries = self.mapping(node, path, CASE_KEYS)
        if not entries and not isinstance(node, yaml.MappingNode):
            return None, []
        name = self.text(entries["name"][1], f"{path}.name", label=True) if "name" in entries else None
        if "name" not in entries:
            self.problem(node, path, "missing key 'name'")
        turns: list[Turn] = []
        if "turns" not in entries:
            self.problem(node, path, "missing key 'turns' (a list of {say, expect})")
        else:
            items = self.items(entries["turns"][1], f"{path}.turns", "turn ({say, expect})")
            turns = [self.turn(t, f"{path}.turns[{i}]") for i, t in enumerate(items)]
        if "expect" in entries and turns:
            case_expect = self.expect(entries["expect"][1], f"{path}.expect")
            last = turns[-1]
            given = _given(last.expect)
            for key in sorted(set(case_expect) & set(given)):
                self.problem(
                    entries["expect"][1],
                    f"{path}.expect.{key}",
                    f"also set in the last turn's expect (line {last.line}): set it in one place",
                )
            turns[-1] = Turn(last.say, Expect(**{**given, **case_expect}), last.line)
        elif "expect" in entries:
            self.expect(entries["expect"][1], f"{path}.expect")
        return name, turns

    def setup(self, node: yaml.Node, path: str) -> tuple[Turn, ...]:
        """The setup instructions: one string, or a list of strings and {say, expect} steps."""
        if not isinstance(node, yaml.SequenceNode):
            return (self.instruction(node, path),) if self.text(node, path, message=True) is not None else ()
        if not self.visit(node, path):
            return ()
        if not node.value:
            self.problem(node, path, "must list at least one instruction")
        steps = []
        for i, item in enumerate(node.value):
            if isinstance(item, yaml.MappingNode):
                steps.append(self.turn(item, f"{path}[{i}]", say="the instruction", setup=True))
            elif self.text(item, f"{path}[{i}]", message=True) is not None:
                steps.append(self.instruction(item, f"{path}[{i}]"))
        return tuple(steps)

    @staticmethod
    def instruction(node: yaml.Node, path: str) -> Turn:
        """A setup step given as a string: it must be applied, and its reply complete."""
        return Turn(str(node.value), Expect(), node.start_mark.line + 1)

    def turn(self, node: yaml.Node, path: str, say: str = "what the customer writes", setup: bool = False) -> Turn:
        entries = self.mapping(node, path, TURN_KEYS)
        text = ""
        if "say" in entries:
            text = self.text(entries["say"][1], f"{path}.say", message=True) or ""
        elif isinstance(node, yaml.MappingNode):
            self.problem(node, path, f"missing key 'say' ({say})")
        given = self.expect(entries["expect"][1], f"{path}.expect") if "expect" in entries else {}
        if setup and "escalated" in given:  # said where it is written, not silently never checked
            expect = cast("yaml.MappingNode", entries["expect"][1])
            key = next(k for k, _ in expect.value if k.value == "escalated")
            self.problem(
                key,
                f"{path}.expect.escalated",
                "a setup step talks to the management agent, whose conversation never escalates: remove it",
            )
        return Turn(text, Expect(**given), node.start_mark.line + 1)


def _given(expect: Expect) -> dict[str, Any]:
    """The expectations set explicitly (the default outcome counts as not set)."""
    defaults = Expect()
    return {k: getattr(expect, k) for k in EXPECT_KEYS if getattr(expect, k) != getattr(defaults, k)}


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == "tag:yaml.org,2002:null":
        return "empty"
    return _clip(node.value)


def _clip(text: str, chars: int = 60) -> str:
    """`text` quoted for a message, cut to about `chars` (a suite's values can be megabytes long)."""
    return repr(text) if len(text) <= chars else repr(text[:chars]) + f"… ({len(text)} characters)"


def _walk(check: _Checker, root: yaml.Node) -> tuple[str | None, tuple[Turn, ...], list[Case]]:
    """The suite's name, setup and cases; every problem goes to `check`."""
    entries = check.mapping(root, "", SUITE_KEYS)
    name = check.text(entries["name"][1], "name", label=True) if "name" in entries else None
    setup = check.setup(entries["setup"][1], "setup") if "setup" in entries else ()
    cases: list[Case] = []
    if "cases" not in entries:
        if isinstance(root, yaml.MappingNode):
            check.problem(root, "", "missing key 'cases' (a list of {name, turns})")
    else:
        first_line: dict[str, int] = {}
        for i, case_node in enumerate(check.items(entries["cases"][1], "cases", "case ({name, turns})")):
            path = f"cases[{i}]"
            case_name, turns = check.case(case_node, path)
            line = case_node.start_mark.line + 1
            if case_name is not None and case_name in first_line:
                name_node = cast("yaml.MappingNode", case_node)
                key_node = next(v for k, v in name_node.value if k.value == "name")
                check.problem(
                    key_node, f"{path}.name", f"{_clip(case_name)} is already a case (line {first_line[case_name]})"
                )
            elif case_name is not None:
                first_line[case_name] = line
                cases.append(Case(case_name, tuple(turns), line))
    return name, setup, cases


@functools.cache
def _loader() -> type[yaml.SafeLoader]:
    """PyYAML's safe loader, refusing nesting deeper than MAX_DEPTH at the node that goes too deep."""

    class Loader(yaml.SafeLoader):
        depth = 0

        def descend_resolver(self, current_node: Any, current_index: Any) -> None:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            super().descend_resolver(current_node, current_index)

        def ascend_resolver(self) -> None:
            self.depth -= 1
            super().ascend_resolver()

    return Loader


def parse_suite(text: str, source: str = "<suite>") -> Suite:
    """Parse and check a suite; `SuiteError` lists every problem with its line. Nothing is sent."""
    try:
        root = yaml.compose(text, Loader=_loader())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        detail = " ".join(part for part in (exc.context, exc.problem) if part)
        raise SuiteError(source, [Problem(line, column, "", f"not valid YAML: {detail}")]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML refuses: no mark, an offset
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        problem = f"not valid YAML: the character {chr(exc.character)!r} is not allowed"
        raise SuiteError(source, [Problem(line, column, "", problem)]) from None
    except yaml.YAMLError as exc:
        raise SuiteError(source, [Problem(1, 1, "", f"not valid YAML: {exc}")]) from None
    if root is None:
        raise SuiteError(source, [Problem(1, 1, "", "the suite is empty: it needs at least `cases`")])
    check = _Checker()
    try:
        name, setup, cases = _walk(check, root)
    except _TooLarge:
        name, setup, cases = None, (), []
    if check.problems:
        raise SuiteError(source, check.problems)
    return Suite(cases=tuple(cases), name=name, setup=setup, source=source)


def load_suite(path: str) -> Suite:
    """Read and parse a suite file; an unreadable file is a `SuiteError` too."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_SUITE_BYTES + 1)
    except OSError as exc:
        raise SuiteError(path, [Problem(1, 1, "", f"cannot read the suite: {exc.strerror or exc}")]) from None
    if len(data) > MAX_SUITE_BYTES:
        limit = f"the suite is larger than {MAX_SUITE_BYTES // 1024} KiB: split it into several suites"
        raise SuiteError(path, [Problem(1, 1, "", limit)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        problem = f"not UTF-8: the byte {data[exc.start]:#04x} cannot be decoded"
        raise SuiteError(path, [Problem(line, column, "", problem)]) from None
    return parse_suite(text, path)
