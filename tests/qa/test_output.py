"""What people read: the progress display (terminal and plain), the summary table, JUnit XML parsed back."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest

from lexey_mcp.qa.output import Progress, failure_line, junit_xml, summary_table
from lexey_mcp.qa.report import CaseReport, Failure, RunReport, SuiteReport

pytestmark = pytest.mark.anyio

CONTAINS = Failure(turn=1, expectation="contains", detail="missing '$12'; reply: \"Pro costs twelve\"")
ESCALATED = Failure(turn=2, expectation="escalated", detail="expected escalated, conversation is not escalated")


def run(passed: bool, seconds: float, *failures: Failure) -> RunReport:
    return RunReport(passed=passed, conversation_id=f"conv-{seconds}", seconds=seconds, failures=list(failures))


def report(repeat: int) -> SuiteReport:
    if repeat == 1:
        cases = [
            CaseReport(name="pricing", passed=True, pass_rate=1.0, flaky=False, runs=[run(True, 0.5)]),
            CaseReport(
                name="refund", passed=False, pass_rate=0.0, flaky=False, runs=[run(False, 1.5, CONTAINS, ESCALATED)]
            ),
        ]
    else:
        cases = [
            CaseReport(
                name="pricing",
                passed=False,
                pass_rate=0.6667,
                flaky=True,
                runs=[run(True, 0.4), run(False, 0.9, CONTAINS), run(True, 0.5)],
            )
        ]
    return SuiteReport(name="Acme", passed=False, cases=cases)


def test_junit_has_one_testcase_per_case_and_run_with_each_failed_expectation() -> None:
    root = ET.fromstring(junit_xml(report(1), 1, "Acme"))
    assert root.tag == "testsuites"
    (suite,) = root
    assert (suite.get("name"), suite.get("tests"), suite.get("failures"), suite.get("errors")) == (
        "Acme",
        "2",
        "1",
        "0",
    )
    pricing, refund = suite.findall("testcase")
    assert (pricing.get("name"), pricing.get("classname"), pricing.get("time")) == ("pricing", "Acme", "0.500")
    assert pricing.find("failure") is None
    assert pricing.findtext("system-out") == "conversation conv-0.5"
    failure = refund.find("failure")
    assert failure is not None
    assert failure.get("message") == "2 expectations failed; first: turn 1 contains"
    assert failure.text == (
        "turn 1 contains: missing '$12'; reply: \"Pro costs twelve\"\n"
        "turn 2 escalated: expected escalated, conversation is not escalated"
    )


def test_junit_reports_a_failed_request_as_an_error_and_unmet_expectations_as_failures() -> None:
    """A request that failed (Lexey refused it, the connection broke) is an `error`: the run could not finish.
    Expectations the replies before it did not meet stay a `failure`."""
    refused = Failure(turn=2, expectation="request", detail="Lexey customer API answered HTTP 402: Payment required")
    cases = [
        CaseReport(name="broken", passed=False, pass_rate=0.0, flaky=False, runs=[run(False, 0.1, refused)]),
        CaseReport(name="both", passed=False, pass_rate=0.0, flaky=False, runs=[run(False, 0.2, CONTAINS, refused)]),
        CaseReport(name="wrong", passed=False, pass_rate=0.0, flaky=False, runs=[run(False, 0.3, ESCALATED)]),
    ]
    root = ET.fromstring(junit_xml(SuiteReport(name="Acme", passed=False, cases=cases), 1, "Acme"))
    (suite,) = root
    for element in (root, suite):
        assert (element.get("tests"), element.get("failures"), element.get("errors")) == ("3", "2", "2")
    broken, both, wrong = suite.findall("testcase")
    assert broken.find("failure") is None
    error = broken.find("error")
    assert error is not None
    assert (error.get("type"), error.get("message")) == (
        "RequestFailed",
        "the request of turn 2 failed; the run stopped there",
    )
    assert error.text == "turn 2 request: Lexey customer API answered HTTP 402: Payment required"
    assert [child.tag for child in both] == ["error", "failure", "system-out"]
    assert both.findtext("failure") == "turn 1 contains: missing '$12'; reply: \"Pro costs twelve\""
    assert both.find("failure") == both.findall("failure")[0]
    assert both.findall("failure")[0].get("message") == "1 expectation failed; first: turn 1 contains"
    assert wrong.find("error") is None
    assert wrong.find("failure") is not None


def test_junit_names_runs_when_repeated() -> None:
    root = ET.fromstring(junit_xml(report(3), 3, "Acme"))
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["pricing [run 1]", "pricing [run 2]", "pricing [run 3]"]
    assert [c.find("failure") is not None for c in cases] == [False, True, False]


def test_junit_survives_characters_xml_cannot_carry() -> None:
    bad = Failure(turn=1, expectation="contains", detail='reply: "a\x00b\x1b[31m"')
    case = CaseReport(name="nul\x01", passed=False, pass_rate=0.0, flaky=False, runs=[run(False, 1.0, bad)])
    root = ET.fromstring(junit_xml(SuiteReport(name=None, passed=False, cases=[case]), 1, "s"))
    testcase = root.find("./testsuite/testcase")
    assert testcase is not None
    assert testcase.get("name") == "nul\ufffd"
    assert testcase.findtext("failure") == 'turn 1 contains: reply: "a\\x00b\\x1b[31m"'


async def test_control_characters_from_a_reply_never_reach_the_terminal_raw() -> None:
    hostile = Failure(turn=1, expectation="contains", detail='reply: "\x1b]0;pwned\x07\x1b[2J\tline\r\nnext\x9b"')
    shown = 'turn 1 contains: reply: "\\x1b]0;pwned\\x07\\x1b[2J line  next\\x9b"'
    assert failure_line(hostile) == shown
    case = CaseReport(name="a", passed=False, pass_rate=0.0, flaky=False, runs=[run(False, 1.0, hostile)])
    assert shown in summary_table(SuiteReport(name=None, passed=False, cases=[case]), width=200)
    out = Terminal()
    await Progress(repeat=1, stream=out)(1, 1, "a", 0, run(False, 1.0, hostile))
    assert "\x1b]" not in out.getvalue()
    assert "\x07" not in out.getvalue()


def test_summary_table_shows_rate_median_and_first_failure() -> None:
    table = summary_table(report(1), width=200)
    lines = table.splitlines()
    assert lines[0].split() == ["case", "pass", "rate", "median", "s", "first", "failure"]
    assert lines[2].split() == ["pricing", "1/1", "(100%)", "0.50"]
    assert lines[3].startswith("refund ")
    assert "0/1 (0%)" in lines[3]
    assert lines[3].endswith("1.50  turn 1 contains: missing '$12'; reply: \"Pro costs twelve\"")
    assert lines[-1] == "Acme: FAILED: 1 of 2 cases failed (1 of 2 runs)."


def test_summary_table_names_flaky_cases() -> None:
    table = summary_table(report(3), width=200)
    assert "2/3 (67%) flaky" in table
    assert table.endswith("Flaky (passed some runs, failed others): pricing.")
    assert "0.50" in table.splitlines()[2]  # the median of 0.4, 0.9, 0.5
    passing = SuiteReport(
        name=None, passed=True, cases=[CaseReport(name="a", passed=True, pass_rate=1.0, flaky=False, runs=[])]
    )
    assert summary_table(passing).endswith("PASSED: 1 cases, 0 runs, all passed.")


def test_summary_table_fits_a_narrow_terminal_and_wraps_the_failure() -> None:
    table = summary_table(report(1), width=60)
    lines = table.splitlines()
    assert all(len(line) <= 60 for line in lines)
    assert lines[3].startswith("refund ")
    failure = " ".join(line.strip() for line in lines[3:6])
    assert failure.endswith("1.50  turn 1 contains: missing '$12'; reply: \"Pro costs twelve\"")  # nothing cut
    assert lines[4].startswith(" " * 31 + "'$12'")  # under the failure column
    long = Failure(turn=1, expectation="contains", detail="reply: " + "word " * 200)
    case = CaseReport(name="a", passed=False, pass_rate=0.0, flaky=False, runs=[run(False, 1.0, long)])
    lines = summary_table(SuiteReport(name=None, passed=False, cases=[case]), width=60).splitlines()
    assert len(lines) == 2 + 4 + 2  # header, rule, 4 lines of failure at most, blank, verdict
    assert lines[5].endswith(" …")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_is_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(repeat=1, stream=out)
    await progress(1, 2, "pricing", 0, run(True, 0.5))
    await progress(2, 2, "refund", 0, run(False, 1.5, CONTAINS))
    assert out.getvalue() == (
        "[1/2] PASS pricing (0.50s)\n"
        "[2/2] FAIL refund (1.50s)\n"
        "     turn 1 contains: missing '$12'; reply: \"Pro costs twelve\"\n"
    )


async def test_progress_on_a_terminal_redraws_a_status_line_with_the_failures() -> None:
    out = Terminal()
    progress = Progress(repeat=2, stream=out)
    await progress(1, 3, "pricing", 0, run(True, 0.5))
    assert out.getvalue() == "\r\x1b[2K1/3 runs done"
    await progress(2, 3, "refund", 1, run(False, 1.5, CONTAINS))
    assert out.getvalue().endswith(
        "\r\x1b[2KFAIL refund [run 2] (1.50s)\n"
        "     turn 1 contains: missing '$12'; reply: \"Pro costs twelve\"\n"
        "2/3 runs done; failing: refund"
    )
    await progress(3, 3, "pricing", 1, run(True, 0.5))
    assert out.getvalue().endswith("3/3 runs done; failing: refund\r\x1b[2K")  # cleared for the table
