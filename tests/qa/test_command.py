"""`lexey-mcp test`: the shipped examples as a CI job runs them (exit 0 and 1), and every exit-2 refusal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import anyio
import pytest

from lexey_mcp.cli import build_parser, main
from lexey_mcp.config import Settings
from lexey_mcp.events.store import STATE_FILE, SQLiteEventStore
from lexey_mcp.qa.arguments import MAX_RUNS
from lexey_mcp.qa.command import run_test_command
from lexey_mcp.qa.report import SuiteReport
from lexey_mcp.sandbox import Fault, Sandbox
from tests.hardening.test_key_echo import echoing_chat
from tests.processes import SERVER, clean_env, upstream_env
from tests.reading import leaks
from tests.streams import ALL_KEYS, CUSTOMER_KEY

SUITES = Path(__file__).resolve().parents[2] / "examples" / "suites"
PASSING = str(SUITES / "acme-support.yaml")
FAILING = str(SUITES / "fails-on-purpose.yaml")


def lexey_mcp_test(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVER, "test", *args, "--delay", "0"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=cwd,
        timeout=60,
        check=False,
    )


@pytest.mark.e2e
def test_the_passing_example_exits_0_with_junit_and_json(tmp_path: Path) -> None:
    done = lexey_mcp_test(PASSING, "--sandbox", "--junit", "out.xml", "--json", "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Acme support: PASSED: 5 cases, 5 runs, all passed." in done.stdout
    assert "[5/5] PASS" in done.stdout  # plain progress lines: stdout is not a terminal
    root = ET.parse(tmp_path / "out.xml").getroot()
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == [
        "pricing",
        "business hours",
        "does not guess",
        "legal issue escalates",
        "refund after a question escalates",
    ]
    assert all(c.find("failure") is None for c in cases)
    report = SuiteReport.model_validate_json((tmp_path / "out.json").read_text())
    assert report.passed
    assert {r.conversation_id for c in report.cases for r in c.runs}.isdisjoint({None})
    assert set(json.loads((tmp_path / "out.json").read_text())) == {
        "name",
        "passed",
        "setup",
        "cases",
        "interrupted",
        "baseline",
    }
    # The management agent's reply to each of the suite's four setup instructions, in order.
    assert [step.outcome for step in report.setup] == ["applied"] * 4
    assert report.setup[0].instruction.startswith("Our business is a SaaS company called Acme.")
    assert report.setup[0].reply.startswith("Business context saved")
    assert "Setup, the management agent's replies:\n  1. applied: \"Our business is" in done.stdout


@pytest.mark.e2e
def test_the_failing_example_exits_1_with_a_readable_report(tmp_path: Path) -> None:
    done = lexey_mcp_test(FAILING, "--sandbox", "--junit", "out.xml", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "FAIL student discount" in out
    assert "turn 1 contains: missing '50% off'; reply: \"Here's what I can tell you about pricing:" in out
    assert "turn 1 escalated: expected escalated, conversation is not escalated" in out
    table = out[out.index("case  ") :]
    assert "student discount        0/1 (0%)" in table
    assert out.rstrip().endswith("FAILED: 2 of 3 cases failed (2 of 3 runs).")
    suite = ET.parse(tmp_path / "out.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("3", "2")
    failure = suite.find("./testcase[@name='cancellation escalates']/failure")
    assert failure is not None
    assert failure.text is not None
    assert failure.text.splitlines() == [
        "turn 1 matches: no match for /cancel\\w*/; reply: \"I'm sorry, I don't know the answer to that. There is "
        "nothing about it in my knowledge base yet, so I'd rather not guess.\"",
        "turn 1 escalated: expected escalated, conversation is not escalated (no status event); reply: \"I'm sorry, "
        "I don't know the answer to that. There is nothing about it in my knowledge base yet, so I'd rather not "
        'guess."',
    ]


@pytest.fixture(autouse=True)
def no_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("LEXEY_", "LEXI_"))]:
        monkeypatch.delenv(name)


def run(argv: list[str], settings: Settings | None = None) -> int:
    args = build_parser().parse_args(["test", *argv, "--delay", "0"])
    return run_test_command(args, settings if settings is not None else Settings(_env_file=None))


def test_an_invalid_suite_exits_2_naming_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases:\n  - name: a\n    turns:\n      - say: hi\n        expect: {contain: [x]}\n")
    assert run([str(bad), "--sandbox"]) == 2
    captured = capsys.readouterr()
    assert f"{bad}:5:18: cases[0].turns[0].expect.contain: unknown key 'contain' (did you mean 'contains'?)" in (
        captured.err
    )
    assert captured.out == ""  # refused before anything ran


def test_configuration_problems_exit_2_before_anything_is_sent(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([PASSING]) == 2  # no --sandbox and no keys
    assert "LEXEY_CUSTOMER_KEY is not set" in capsys.readouterr().err
    assert run([PASSING], Settings(_env_file=None, customer_key="lxc_x", base_url="http://127.0.0.1:9")) == 2
    err = capsys.readouterr().err
    assert "setup instructions, which need the management key. LEXEY_MANAGEMENT_KEY is not set" in err
    assert run([PASSING, "--sandbox", "--case", "nope", "--case", "pricing"]) == 2
    assert "No case named 'nope' in" in capsys.readouterr().err


@pytest.mark.e2e
def test_cases_repeat_and_skip_setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junit = tmp_path / "r.xml"
    assert run([PASSING, "--sandbox", "--case", "pricing", "--repeat", "2", "--junit", str(junit)]) == 0
    names = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase")]
    assert names == ["pricing [run 1]", "pricing [run 2]"]
    capsys.readouterr()
    # Without its setup the sandbox's agent knows nothing: the knowledge the suite relies on comes from setup.
    assert run([PASSING, "--sandbox", "--skip-setup", "--case", "pricing", "--concurrency", "1"]) == 1
    assert "missing '$12', 'unlimited projects'" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flag", "value", "maximum"),
    [
        ("--concurrency", "0", 64),
        ("--repeat", "-3", 500),
        ("--concurrency", "65", 64),
        ("--repeat", "1000000000", 500),
        ("--repeat", "two", 500),
    ],
)
def test_counts_out_of_bounds_are_refused(
    flag: str, value: str, maximum: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["test", PASSING, flag, value])
    assert exited.value.code == 2
    assert f"argument {flag}: must be a whole number from 1 to {maximum}, not {value!r}" in capsys.readouterr().err


def test_an_unwritable_report_exits_2_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run([PASSING, "--sandbox", "--json", str(tmp_path / "no" / "r.json")]) == 2
    captured = capsys.readouterr()
    assert f"cannot write the report {tmp_path / 'no' / 'r.json'}: {tmp_path / 'no'} is not a directory" in captured.err
    assert captured.out == ""
    (tmp_path / "taken.xml").mkdir()
    assert run([PASSING, "--sandbox", "--case", "pricing", "--junit", str(tmp_path / "taken.xml")]) == 2
    captured = capsys.readouterr()
    assert f"cannot write the report {tmp_path / 'taken.xml'}: it is a directory" in captured.err
    assert captured.out == ""
    assert run([PASSING, "--sandbox", "--junit", str(tmp_path / "r"), "--json", str(tmp_path / "." / "r")]) == 2
    captured = capsys.readouterr()
    assert f"--junit and --json both name {tmp_path / 'r'}: give each report its own file" in captured.err
    assert captured.out == ""


def test_a_server_option_before_test_is_refused_not_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--sandbox-delay", "0", "test", PASSING, "--case", "pricing"]) == 2
    assert "--sandbox-delay is an option of the server, not of `test`" in capsys.readouterr().err


@pytest.mark.e2e
def test_sandbox_before_test_is_what_test_sandbox_means(capsys: pytest.CaptureFixture[str]) -> None:
    """`test` takes --sandbox itself: given before the command, that is what the user means."""
    assert main(["--sandbox", "test", PASSING, "--case", "pricing"]) == 0
    assert "Acme support: PASSED: 1 cases, 1 runs, all passed." in capsys.readouterr().out


@pytest.mark.e2e
def test_ctrl_c_stops_the_run_and_exits_130(tmp_path: Path) -> None:
    suite = tmp_path / "slow.yaml"
    suite.write_text("cases:\n" + "".join(f"  - {{name: c{i}, turns: [{{say: pricing please}}]}}\n" for i in range(2)))
    command = [*SERVER, "test", str(suite), "--sandbox", "--delay", "5", "--json", str(tmp_path / "r.json")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("slow: running")  # the runs are under way (each takes 5 s a word)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, out + err
    assert err.rstrip().endswith("lexey-mcp test: interrupted; writing the reports of the runs that finished")
    assert "Traceback" not in err
    report = SuiteReport.model_validate_json((tmp_path / "r.json").read_text())  # no run finished: none reported
    assert (report.passed, report.cases, report.interrupted) == (False, [], "SIGINT after 0 of 2 runs")


@pytest.mark.e2e
def test_a_reader_that_goes_away_silences_the_output_not_the_run(tmp_path: Path) -> None:
    command = [*SERVER, "test", FAILING, "--sandbox", "--delay", "0", "--json", str(tmp_path / "r.json")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert proc.stdout.readline().startswith("Acme support (fails on purpose): running")
        proc.stdout.close()  # `lexey-mcp test … | head -1`
        err = proc.stderr.read()
        proc.wait(timeout=30)
    assert proc.returncode == 1, err  # the run finished, and failed as the example does
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
    assert not SuiteReport.model_validate_json((tmp_path / "r.json").read_text()).passed


def test_a_run_over_max_runs_exits_2_before_anything_is_sent(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([PASSING, "--sandbox", "--repeat", str(MAX_RUNS)]) == 2  # the suite has several cases
    assert f"one suite run takes at most {MAX_RUNS}" in capsys.readouterr().err


ECHO_SUITE = """
name: echo
cases:
  - name: echoed
    turns: [{say: "What is my key?", expect: {contains: ["nothing like it"]}}]
  - name: second
    turns: [{say: "Hello"}]
"""


@pytest.mark.e2e
@pytest.mark.anyio
async def test_a_key_echoed_upstream_reaches_no_report_and_no_output(sandbox: Sandbox, tmp_path: Path) -> None:
    """Replies may quote a key back: the terminal output and every report file are redacted, as the tools are."""
    (tmp_path / "suite.yaml").write_text(ECHO_SUITE)
    sandbox.inject(Fault(target="customer", raw_chunks=echoing_chat(CUSTOMER_KEY), times=2))
    done = await anyio.run_process(
        [*SERVER, "test", "suite.yaml", "--json", "r.json", "--junit", "r.xml", "--html", "r.html"],
        cwd=tmp_path,
        env=clean_env(**upstream_env(sandbox)),
        check=False,
    )
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 1, out  # the echo fails the expectation: the reply was read, and reported
    assert "[redacted]" in out
    reports = [(tmp_path / name).read_text() for name in ("r.json", "r.xml", "r.html")]
    assert all("[redacted]" in report for report in reports)
    assert leaks("\n".join([out, *reports]), ALL_KEYS, any_case=True) == []


@pytest.mark.e2e
@pytest.mark.anyio
async def test_a_rate_limit_mid_suite_reports_the_runs_that_finished_and_exits_2(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    (tmp_path / "suite.yaml").write_text(ECHO_SUITE)
    done = await anyio.run_process(
        [*SERVER, "test", "suite.yaml", "--json", "r.json", "--concurrency", "1"],
        cwd=tmp_path,
        env=clean_env(**upstream_env(sandbox), LEXEY_MCP_RATE_LIMIT="1/minute"),
        check=False,
    )
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "Traceback" not in err
    assert "The suite stopped after 1 of 2 runs" in err
    report = SuiteReport.model_validate_json((tmp_path / "r.json").read_text())
    assert [(case.name, len(case.runs)) for case in report.cases] == [("echoed", 1)]
    assert report.interrupted is not None
    assert report.interrupted.startswith("The suite stopped after 1 of 2 runs")
    assert not report.passed


@pytest.mark.e2e
@pytest.mark.anyio
async def test_with_the_feed_configured_the_runs_conversations_are_marked_in_its_store(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The same settings as the server receiving Lexey's webhooks (its secret, its state directory): the server lists
    the escalations these runs cause as the suite's."""
    (tmp_path / "suite.yaml").write_text(ECHO_SUITE)
    state = tmp_path / "state"
    env = clean_env(**upstream_env(sandbox), LEXEY_WEBHOOK_SECRET="s" * 32, LEXEY_STATE_DIR=str(state))
    done = await anyio.run_process(
        [*SERVER, "test", "suite.yaml", "--json", "r.json"], cwd=tmp_path, env=env, check=False
    )
    assert done.returncode == 1, done.stderr.decode()  # the first case expects what the sandbox never says
    report = SuiteReport.model_validate_json((tmp_path / "r.json").read_text())
    made = {run.conversation_id: case.name for case in report.cases for run in case.runs}
    store = SQLiteEventStore(state / STATE_FILE, retention_days=30)
    marks = await store.marks([cid for cid in made if cid is not None])
    await store.aclose()
    assert {cid: (mark.suite, mark.case) for cid, mark in marks.items()} == {
        cid: ("echo", case) for cid, case in made.items()
    }
    assert len(marks) == 2
