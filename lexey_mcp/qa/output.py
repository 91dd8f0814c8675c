"""What people read of a suite run: live progress, the setup replies, the summary table, the comparison with a
baseline, JUnit XML for CI (the HTML report is `html`)."""

from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TextIO

from .report import REQUEST_FAILED, CaseReport, Failure, RunReport, SuiteReport
from .runner import excerpt
from .suite import CONTROL

# Characters XML 1.0 cannot carry at all (a reply is upstream text: it may hold any of them).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


#: Lines the first failure may take in the summary table on a narrow terminal.
FAILURE_LINES = 4


def run_label(case: str, index: int, repeat: int) -> str:
    """`name`, or `name [run i]` (1-based) when the case runs more than once: the JUnit testcase name."""
    return case if repeat == 1 else f"{case} [run {index + 1}]"


def failure_line(failure: Failure) -> str:
    """One line for people: control characters from the reply (an ANSI escape would act on the terminal) are
    shown as `\\x1b`, line breaks as spaces."""
    return _visible(f"turn {failure.turn} {failure.expectation}: {failure.detail}")


def _visible(text: str) -> str:
    return CONTROL.sub(lambda found: " " if found[0] in "\t\n\r" else f"\\x{ord(found[0]):02x}", text)


class Progress:
    """Progress as runs finish. On a terminal: one status line rewritten in place (runs done / total, the cases
    failing so far), with each failure printed above it. Otherwise: one plain line per finished run."""

    def __init__(self, repeat: int, stream: TextIO | None = None) -> None:
        self._out = stream if stream is not None else sys.stdout
        self._live = self._out.isatty()
        self._repeat = repeat
        self._failing: list[str] = []

    async def __call__(self, done: int, total: int, case: str, index: int, run: RunReport) -> None:
        label = run_label(case, index, self._repeat)
        if not run.passed and case not in self._failing:
            self._failing.append(case)
        verdict = "PASS" if run.passed else "FAIL"
        lines = [f"{verdict} {label} ({run.seconds:.2f}s)"]
        lines += [f"     {failure_line(f)}" for f in run.failures]
        if not self._live:
            write(self._out, f"[{done}/{total}] " + "\n".join(lines) + "\n")
            return
        text = "\r\x1b[2K"  # clear the status line, print above it, then draw it again
        if not run.passed:
            text += "\n".join(lines) + "\n"
        width = shutil.get_terminal_size().columns
        failing = f"; failing: {', '.join(self._failing)}" if self._failing else ""
        text += f"{done}/{total} runs done{failing}"[: max(20, width - 1)]
        if done == total:
            text += "\r\x1b[2K"
        write(self._out, text)


def write(stream: TextIO, text: str) -> None:
    """Write and flush. When the reader has gone (`lexey-mcp test … | head`), the rest of the output goes to
    /dev/null: the run still finishes, and its exit status still says whether it passed."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


def _cell(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _rate(case: CaseReport) -> str:
    passed = sum(r.passed for r in case.runs)
    note = " flaky" if case.flaky else ""
    return f"{passed}/{len(case.runs)} ({case.pass_rate:.0%}){note}"


def summary_table(report: SuiteReport, width: int = 120) -> str:
    """case | pass rate | median s | first failure (with the part of the reply that failed it), and a verdict."""
    rows = [("case", "pass rate", "median s", "first failure")]
    for case in report.cases:
        first = case.first_failure
        rows.append((case.name, _rate(case), f"{case.median_seconds:.2f}", failure_line(first) if first else ""))
    name_w = min(40, max(len(r[0]) for r in rows))
    rate_w = max(len(r[1]) for r in rows)
    secs_w = max(len(r[2]) for r in rows)
    rest = max(20, width - name_w - rate_w - secs_w - 6)
    lines = []
    for n, r, s, f in rows:  # the failure wraps under its column: cut, it would lose the reply that failed it
        cell = textwrap.wrap(f, rest, max_lines=FAILURE_LINES, placeholder=" …") or [""]
        lines.append(f"{_cell(n, name_w):<{name_w}}  {r:<{rate_w}}  {s:>{secs_w}}  {cell[0]}".rstrip())
        lines += [" " * (width - rest) + more for more in cell[1:]]
    lines.insert(1, "-" * min(width, len(max(lines, key=len))))
    runs = [r for c in report.cases for r in c.runs]
    failed_cases = [c.name for c in report.cases if not c.passed]
    flaky = [c.name for c in report.cases if c.flaky]
    title = f"{report.name}: " if report.name else ""
    if report.interrupted:
        title += f"INTERRUPTED ({report.interrupted}): "
    if not failed_cases:
        verdict = f"{title}PASSED: {len(report.cases)} cases, {len(runs)} runs, all passed."
    else:
        failed_runs = sum(not r.passed for r in runs)
        verdict = (
            f"{title}FAILED: {len(failed_cases)} of {len(report.cases)} cases failed "
            f"({failed_runs} of {len(runs)} runs)."
        )
        if flaky:
            verdict += f" Flaky (passed some runs, failed others): {', '.join(flaky)}."
    return "\n".join([*lines, "", verdict])


def setup_lines(report: SuiteReport) -> list[str]:
    """One line per setup step sent: its outcome, the instruction and the management agent's reply (excerpts)."""
    return [
        _visible(f"{i}. {step.outcome}: {excerpt(step.instruction)} → {excerpt(step.reply)}")
        for i, step in enumerate(report.setup, 1)
    ]


def baseline_lines(report: SuiteReport) -> list[str]:
    """One line per case against the baseline (none without one), the changes first."""
    if report.baseline is None:
        return []
    order = ("new failure", "fixed", "pass rate changed", "still failing", "not run", "new case", "unchanged")

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    changes = sorted(report.baseline, key=lambda c: order.index(c.change))
    return [f"{c.change}: {c.name} ({rate(c.baseline_pass_rate)} → {rate(c.pass_rate)})" for c in changes]


def text_report(report: SuiteReport, width: int = 120) -> str:
    """The whole report for a terminal or a log: setup replies, the summary table, the baseline comparison."""
    parts = []
    if report.setup:
        parts.append(
            "Setup, the management agent's replies:\n" + "\n".join(f"  {line}" for line in setup_lines(report))
        )
    if report.cases or not report.setup:
        parts.append(summary_table(report, width))
    if report.baseline is not None:
        new = len(report.new_failures)
        head = f"Against the baseline: {new} new failure{'' if new == 1 else 's'}."
        parts.append(head + "\n" + "\n".join(f"  {line}" for line in baseline_lines(report)))
    return "\n\n".join(parts)


def tool_text(report: SuiteReport, quote: Callable[[str], str]) -> str:
    """`run_test_suite`'s text for a model: each setup step's outcome and reply (the replies are upstream words,
    put through `quote`: a `quoting.Fence`), the summary table in whole lines, the baseline comparison."""
    parts = []
    if report.setup:
        replies = "\n".join(f"{i}. {step.outcome}: {excerpt(step.reply)}" for i, step in enumerate(report.setup, 1))
        parts.append(f"Setup: {len(report.setup)} instructions sent; the management agent replied:\n{quote(replies)}")
    parts.append(summary_table(report, width=10_000))
    lines = baseline_lines(report)
    if lines:
        new = len(report.new_failures)
        parts.append(f"Against the baseline: {new} new failure{'' if new == 1 else 's'}.\n" + "\n".join(lines))
    return "\n\n".join(parts)


def junit_xml(report: SuiteReport, repeat: int, suite_name: str) -> bytes:
    """One `testcase` per case and run: failed expectations are its `failure`; a request that failed (the run could
    not finish) is its `error`, so CI tells a broken upstream or key from an agent that answered wrongly."""
    runs = [r for c in report.cases for r in c.runs]
    errors = sum(any(f.expectation == REQUEST_FAILED for f in r.failures) for r in runs)
    failures = sum(any(f.expectation != REQUEST_FAILED for f in r.failures) for r in runs)
    seconds = f"{sum(r.seconds for r in runs):.3f}"
    suite_name = _xml(suite_name)
    counts = {"tests": str(len(runs)), "failures": str(failures), "errors": str(errors), "time": seconds}
    root = ET.Element("testsuites", {"name": suite_name, **counts})
    suite = ET.SubElement(root, "testsuite", {"name": suite_name, **counts})
    for case in report.cases:
        for index, run in enumerate(case.runs):
            testcase = ET.SubElement(
                suite,
                "testcase",
                classname=suite_name,
                name=_xml(run_label(case.name, index, repeat)),
                time=f"{run.seconds:.3f}",
            )
            unmet = [f for f in run.failures if f.expectation != REQUEST_FAILED]
            for broken in (f for f in run.failures if f.expectation == REQUEST_FAILED):  # before `failure`, per schema
                message = f"the request of turn {broken.turn} failed; the run stopped there"
                error = ET.SubElement(testcase, "error", message=message, type="RequestFailed")
                error.text = _xml(failure_line(broken))
            if unmet:
                first = unmet[0]
                noun = "expectation" if len(unmet) == 1 else "expectations"
                failure = ET.SubElement(
                    testcase,
                    "failure",
                    message=f"{len(unmet)} {noun} failed; first: turn {first.turn} {first.expectation}",
                    type="ExpectationFailed",
                )
                failure.text = _xml("\n".join(failure_line(f) for f in unmet))
            if run.conversation_id:
                ET.SubElement(testcase, "system-out").text = f"conversation {run.conversation_id}"
    notes = _suite_notes(report)
    if notes:
        ET.SubElement(suite, "system-out").text = _xml(notes)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def _suite_notes(report: SuiteReport) -> str:
    """The testsuite's system-out: why the run stopped early, every setup step with its whole reply, the baseline."""
    notes = [f"interrupted: {report.interrupted}"] if report.interrupted else []
    for i, step in enumerate(report.setup, 1):
        notes += [f"setup {i} ({step.outcome}): {step.instruction}", f"reply: {step.reply}"]
        notes += [f"  {failure_line(f)}" for f in step.failures]
    lines = baseline_lines(report)
    if lines:
        notes += ["against the baseline:", *(f"  {line}" for line in lines)]
    return "\n".join(notes)
