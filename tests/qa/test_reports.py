"""`lexey-mcp test` reports that survive: Ctrl-C, SIGTERM and --timeout write every report requested with the runs
that finished; a setup step that fails stops the suite with exit 2 and is in every report; --baseline marks each
case against an earlier JSON report."""

from __future__ import annotations

import json
import os
import signal
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lexey_mcp.cli import build_parser
from lexey_mcp.config import Settings
from lexey_mcp.errors import LexeyInputError
from lexey_mcp.qa.command import run_test_command
from lexey_mcp.qa.compare import compare, read_baseline
from lexey_mcp.qa.report import CaseReport, SuiteReport
from tests.processes import started

SUITES = Path(__file__).resolve().parents[2] / "examples" / "suites"
#: One case passes, two fail (no `matches`: it would start a process).
PASS_FAIL_FAIL = """\
cases:
  - {name: pricing, turns: [{say: hi, expect: {contains: [help]}}]}
  - {name: student discount, turns: [{say: hi, expect: {contains: [50% off]}}]}
  - {name: cancellation escalates, turns: [{say: hi}], expect: {escalated: true}}
"""
#: With --delay 1 (a second per streamed word), "hi" is answered in about 7 s, the slow question in about 25 s.
QUICK_THEN_SLOW = """\
cases:
  - name: quick
    turns: [{{say: hi{expect}}}]
  - name: slow
    turns: [{{say: Tell me everything about your company and its products}}]
"""


def _suite(tmp_path: Path, quick_fails: bool) -> Path:
    suite = tmp_path / "suite.yaml"
    suite.write_text(QUICK_THEN_SLOW.format(expect=", expect: {contains: [nope]}" if quick_fails else ""))
    return suite


def _reports(tmp_path: Path) -> list[str]:
    return ["--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"), "--html", str(tmp_path / "r.html")]


def _read(tmp_path: Path) -> tuple[SuiteReport, ET.Element, str]:
    report = SuiteReport.model_validate_json((tmp_path / "r.json").read_text())
    return report, ET.parse(tmp_path / "r.xml").getroot(), (tmp_path / "r.html").read_text()


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_suite_writes_every_report_with_the_runs_that_finished(tmp_path: Path, signum: int) -> None:
    args = ["test", str(_suite(tmp_path, quick_fails=True)), "--sandbox", "--delay", "1", "--concurrency", "1"]
    with started(tmp_path, *args, *_reports(tmp_path)) as process:
        process.wait_for(lambda: "[1/2] FAIL quick" in process.stdout(), "the first run's end")
        process.signal(signum)  # the slow run is under way: it has about 20 s to go
        process.stopped_by(signum)
    name = signal.Signals(signum).name
    report, junit, page = _read(tmp_path)
    assert report.interrupted == f"{name} after 1 of 2 runs"
    assert (report.passed, [c.name for c in report.cases]) == (False, ["quick"])
    assert report.cases[0].runs[0].turns[0].reply == "Hi! How can I help you today?"
    assert [t.get("name") for t in junit.iter("testcase")] == ["quick"]
    suite_out = junit.find("./testsuite/system-out")
    assert suite_out is not None
    assert suite_out.text == f"interrupted: {name} after 1 of 2 runs"
    assert f"Interrupted: {name} after 1 of 2 runs" in page
    assert f"INTERRUPTED ({name} after 1 of 2 runs): FAILED: 1 of 1 cases failed" in process.stdout()
    assert "lexey-mcp test: interrupted; writing the reports of the runs that finished" in process.stderr()


@pytest.mark.e2e
@pytest.mark.parametrize(("quick_fails", "status"), [(True, 1), (False, 124)])
def test_a_time_out_writes_the_reports_and_exits_1_with_failures_else_124(
    tmp_path: Path, quick_fails: bool, status: int
) -> None:
    suite = _suite(tmp_path, quick_fails)
    # The quick run needs ~7 s of the sandbox's pauses, the slow one ~25 s: 20 s leaves a loaded machine 13 s of CPU.
    args = ["test", str(suite), "--sandbox", "--delay", "1", "--concurrency", "1", "--timeout", "20"]
    with started(tmp_path, *args, *_reports(tmp_path)) as process:
        assert process.finish(within=120) == status, process.stdout() + process.stderr()
    report, junit, page = _read(tmp_path)
    assert report.interrupted == "time-out of 20s after 1 of 2 runs"
    assert [(c.name, c.passed) for c in report.cases] == [("quick", not quick_fails)]
    assert not report.passed  # an incomplete suite never passes
    assert [t.get("name") for t in junit.iter("testcase")] == ["quick"]
    assert "Interrupted: time-out of 20s after 1 of 2 runs" in page


@pytest.fixture(autouse=True)
def no_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("LEXEY_", "LEXI_"))]:
        monkeypatch.delenv(name)


def run(*argv: str) -> int:
    args = build_parser().parse_args(["test", *argv, "--sandbox", "--delay", "0"])
    return run_test_command(args, Settings(_env_file=None))


def test_a_setup_step_not_applied_exits_2_naming_it_with_every_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "setup.yaml"
    suite.write_text(
        "setup:\n"
        "  - 'Add a knowledge article about refunds: Refunds within 30 days.'\n"
        "  - Please make refunds over $100 go to a human.\n"
        "  - Always escalate legal issues.\n"
        "cases:\n  - {name: refund, turns: [{say: I want a refund of $500}], expect: {escalated: true}}\n"
    )
    assert run(str(suite), *_reports(tmp_path)) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(
        'lexey-mcp test: Setup step 2 (line 3) was not applied, so no case ran: "Please make refunds over $100 go to '
        'a human."; the management agent replied: "Not applied: I didn\'t understand that instruction.'
    )
    assert '1. applied: "Add a knowledge article about refunds' in captured.out
    assert '2. not applied: "Please make refunds over $100 go to a human." → "Not applied:' in captured.out
    report, junit, page = _read(tmp_path)
    assert [(s.instruction, s.outcome) for s in report.setup] == [
        ("Add a knowledge article about refunds: Refunds within 30 days.", "applied"),
        ("Please make refunds over $100 go to a human.", "not applied"),
    ]
    assert report.setup[1].reply.startswith("Not applied: I didn't understand that instruction.")
    assert (report.passed, report.cases) == (False, [])
    setup = json.loads((tmp_path / "r.json").read_text())["setup"]
    assert [sorted(step) for step in setup] == [["failures", "instruction", "outcome", "reply"]] * 2
    suite_out = junit.find("./testsuite/system-out")
    assert suite_out is not None
    assert suite_out.text is not None
    assert suite_out.text.splitlines()[2:4] == [
        "setup 2 (not applied): Please make refunds over $100 go to a human.",
        "reply: " + report.setup[1].reply,
    ]
    assert junit.find(".//testcase") is None
    assert 'data-outcome="not applied"' in page


def test_the_example_with_setup_expectations_stops_when_one_is_unmet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = (SUITES / "refunds-over-100.yaml").read_text()
    assert example.count('contains: ["refund requests over $100"]') == 1
    suite = tmp_path / "unmet.yaml"
    suite.write_text(example.replace('contains: ["refund requests over $100"]', 'contains: ["over $200"]'))
    assert run(str(suite), "--json", str(tmp_path / "r.json")) == 2
    err = capsys.readouterr().err
    assert "Setup step 2 (line 8) missed its expectations (contains: missing 'over $200'; reply: \"Escalation" in err
    steps = SuiteReport.model_validate_json((tmp_path / "r.json").read_text()).setup
    assert [s.outcome for s in steps] == ["applied", "expectation failed"]
    assert [f.expectation for f in steps[1].failures] == ["contains"]


def _baseline(tmp_path: Path, rates: dict[str, float]) -> str:
    cases = [
        {"name": name, "passed": rate == 1, "pass_rate": rate, "flaky": 0 < rate < 1, "runs": []}
        for name, rate in rates.items()
    ]
    path = tmp_path / "old.json"
    # The setup list of an earlier release: strings. Only the cases' names and pass rates are read.
    path.write_text(json.dumps({"name": "x", "passed": False, "setup": ["ok"], "cases": cases}))
    return str(path)


def test_a_baseline_marks_each_case_and_only_a_new_failure_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(PASS_FAIL_FAIL)
    failing = str(suite)
    still = _baseline(tmp_path, {"pricing": 1, "student discount": 0, "cancellation escalates": 0})
    assert run(failing, "--baseline", still) == 0  # failing as before: nothing new
    out = capsys.readouterr().out
    assert "Against the baseline: 0 new failures.\n  still failing: student discount (0% → 0%)" in out
    regressed = _baseline(tmp_path, {"pricing": 0.5, "student discount": 1, "cancellation escalates": 0.5, "gone": 1})
    assert run(failing, "--baseline", regressed, *_reports(tmp_path)) == 1
    out = capsys.readouterr().out
    assert out.rstrip().endswith(
        "Against the baseline: 1 new failure.\n"
        "  new failure: student discount (100% → 0%)\n"
        "  fixed: pricing (50% → 100%)\n"
        "  pass rate changed: cancellation escalates (50% → 0%)\n"
        "  not run: gone (100% → -)"
    )
    report, junit, page = _read(tmp_path)
    assert report.baseline is not None
    assert [(c.name, c.change, c.pass_rate, c.baseline_pass_rate) for c in report.baseline] == [
        ("pricing", "fixed", 1.0, 0.5),
        ("student discount", "new failure", 0.0, 1.0),
        ("cancellation escalates", "pass rate changed", 0.0, 0.5),
        ("gone", "not run", None, 1.0),
    ]
    suite_out = junit.find("./testsuite/system-out")
    assert suite_out is not None
    assert suite_out.text is not None
    assert "against the baseline:\n  new failure: student discount (100% → 0%)" in suite_out.text
    assert "<td>new failure</td>" in page
    assert "1 new failure against the baseline. Not run this time: gone." in page


def test_an_unusable_baseline_exits_2_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(PASS_FAIL_FAIL)
    assert run(str(suite), "--baseline", str(tmp_path / "missing.json")) == 2
    assert f"cannot read the baseline {tmp_path / 'missing.json'}: No such file or directory" in capsys.readouterr().err
    junk = tmp_path / "junk.json"
    junk.write_text('{"cases": [{"name": "a"}]}')
    assert run(str(suite), "--baseline", str(junk)) == 2
    captured = capsys.readouterr()
    assert f"the baseline {junk} is not a lexey-mcp JSON report (from `lexey-mcp test --json`): cases.0.pass_rate" in (
        captured.err
    )
    assert captured.out == ""


def test_compare_reads_a_new_case_and_an_unchanged_one() -> None:
    def case(name: str, rate: float) -> CaseReport:
        return CaseReport(name=name, passed=rate == 1, pass_rate=rate, flaky=0 < rate < 1, runs=[])

    report = SuiteReport(name=None, passed=False, cases=[case("same", 1), case("new ok", 1), case("new bad", 0.5)])
    changes = compare(report, {"same": 1.0}).baseline
    assert changes is not None
    assert [(c.name, c.change) for c in changes] == [
        ("same", "unchanged"),
        ("new ok", "new case"),
        ("new bad", "new failure"),
    ]
    with pytest.raises(
        LexeyInputError, match=r"^the baseline is not a lexey-mcp JSON report .*: the document: Invalid JSON"
    ):
        read_baseline("{")
