"""Every script in examples/ runs against the sandbox and passes its own checks (as a user would run it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from lexey_mcp.qa.report import SuiteReport
from tests.documentation import EVERY_PAGE
from tests.processes import clean_env
from tests.redis_server import redis_binary

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def require(what: str, reason: str) -> NoReturn:
    """Skip with `reason`; fail instead when CI promised `what` (LEXEY_CI_REQUIRE=inspector,nginx,wheel)."""
    if what in os.environ.get("LEXEY_CI_REQUIRE", "").split(","):
        pytest.fail(f"{reason} (LEXEY_CI_REQUIRE includes {what!r})")
    pytest.skip(reason)


def run_example(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # From an empty directory: no .env file can leak in, and the examples must not depend on the working directory.
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=clean_env(), timeout=timeout, cwd=cwd, check=False
    )


@pytest.mark.e2e
def test_e2e_configure_and_test_passes_against_the_sandbox(tmp_path: Path) -> None:
    done = run_example(tmp_path, str(EXAMPLES / "e2e_configure_and_test.py"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout
    assert "FAILED" not in done.stdout
    assert "[ok] the safety incident is escalated" in done.stdout


@pytest.mark.e2e
def test_e2e_configure_and_test_exits_non_zero_when_a_step_fails(tmp_path: Path) -> None:
    # A read-only server has no configure_org: the script must stop with the tool's error and a non-zero status.
    server = f"{sys.executable} -m lexey_mcp --sandbox --read-only"
    done = run_example(tmp_path, str(EXAMPLES / "e2e_configure_and_test.py"), "--server", server)
    assert done.returncode != 0
    assert "configure_org failed" in done.stderr
    assert "all checks passed" not in done.stdout


@pytest.mark.e2e
def test_the_suite_with_setup_expectations_passes_with_its_setup_in_the_report(tmp_path: Path) -> None:
    suite = EXAMPLES / "suites" / "refunds-over-100.yaml"
    done = run_example(tmp_path, "-m", "lexey_mcp", "test", str(suite), "--sandbox", "--delay", "0", "--json", "r.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Refunds over $100: PASSED: 3 cases, 3 runs, all passed." in done.stdout
    report = SuiteReport.model_validate_json((tmp_path / "r.json").read_text())
    assert [(step.outcome, step.reply.split(" (")[0]) for step in report.setup] == [
        ("applied", 'Added the knowledge article "refunds"'),
        ("applied", "Escalation rules updated"),
        ("applied", 'Updated the knowledge article "refunds"'),
    ]
    small, large, alike = report.cases
    assert (small.runs[0].escalated, large.runs[0].escalated, alike.runs[0].escalated) == (False, True, True)
    assert "60 days" in small.runs[0].turns[0].reply  # the article as updated by the third step


@pytest.mark.e2e
def test_library_usage_runs_its_own_sandbox(tmp_path: Path) -> None:
    done = run_example(tmp_path, str(EXAMPLES / "library_usage.py"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "outcome=complete" in done.stdout
    assert "expected error: HTTP 404 (NotFoundError)" in done.stdout
    assert "dropped stream: outcome=partial reason=connection_lost" in done.stdout
    assert "lxc_sandbox" not in done.stdout + done.stderr  # the keys stay out of everything printed


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None


@pytest.mark.e2e
def test_http_replicas_behind_nginx(tmp_path: Path) -> None:
    nginx = nginx_binary()
    if nginx is None:
        require("nginx", "nginx is not installed (apt-get install nginx-light); .ci/run installs it")
    done = run_example(tmp_path, str(EXAMPLES / "http_replicas" / "run.py"), "--nginx", nginx, "--calls", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout
    assert done.stdout.count("served requests") == 2  # one [ok] line per replica
    assert "FAILED" not in done.stdout + done.stderr


@pytest.mark.e2e
def test_http_replicas_share_events_through_redis(tmp_path: Path) -> None:
    nginx = nginx_binary()
    if nginx is None:
        require("nginx", "nginx is not installed (apt-get install nginx-light); .ci/run installs it")
    redis = redis_binary()
    if redis is None:
        require("redis", "redis-server is not installed (apt-get install redis-server); .ci/run installs it")
    script = str(EXAMPLES / "http_replicas" / "run.py")
    done = run_example(tmp_path, script, "--nginx", nginx, "--calls", "1", "--redis", redis)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the listener on replica A was notified" in done.stdout
    assert "list_escalations through nginx shows the escalation" in done.stdout
    assert "FAILED" not in done.stdout + done.stderr


def test_every_example_is_in_the_documentation() -> None:
    pages = "\n".join(EVERY_PAGE.values())
    for path in [*EXAMPLES.glob("*.py"), *EXAMPLES.glob("http_replicas/*")]:
        assert path.relative_to(REPO).as_posix() in pages, f"{path} is not mentioned in README.md or docs/"
