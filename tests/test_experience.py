"""The newcomer's path: the README tells the truth, `python -m lexey_mcp` is the CLI, and the wheel works alone."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

import lexey_mcp
from lexey_mcp import models
from lexey_mcp.cli import build_parser
from lexey_mcp.config import Settings
from lexey_mcp.events.model import Escalation, EscalationList
from lexey_mcp.paths import HEALTH_PATH, MCP_PATH, METRICS_PATH, READY_PATH, WEBHOOK_PATH
from lexey_mcp.server import build_server
from lexey_mcp.server.tools.customer import HistoryPage, ScenarioError, ScenarioResult
from lexey_mcp.validation import LexiContext
from tests.documentation import DOCS, EVERY_PAGE, README, REPO, code_blocks
from tests.processes import clean_env
from tests.test_examples import require

CONFIGURATION = DOCS["docs/configuration.md"]
SETUP = "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && lexey-mcp demo"
VENV = "python3 -m venv .venv && . .venv/bin/activate"
TEST_COMMAND = "PIP_CONSTRAINT=requirements.lock pip install -e '.[test]' && python -m pytest"
#: What pip says when it cannot reach a package index (as opposed to a real packaging failure).
NO_INDEX = re.compile(
    r"No matching distribution|Could not find a version|Failed to establish a new connection|"
    r"Temporary failure in name resolution|Network is unreachable|ProxyError|timed out",
    re.I,
)


def test_readme_shows_the_two_setup_commands_and_ci_runs_the_same_test_command() -> None:
    blocks = [block.strip() for block in code_blocks(README)]
    assert SETUP in blocks, "the first command: install, then the demo against the sandbox"
    assert f"{VENV}\n{TEST_COMMAND}" in blocks, "the second command: a venv, then exactly CI's test command"
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    beside_burners = TEST_COMMAND.replace("python -m pytest", ".ci/burn python -m pytest")
    assert beside_burners in ci, ".ci/run must run the README's test command, exactly (beside .ci/burn's burners)"
    quick_start = README[README.index("## Quick start") : README.index("## Install")]
    assert quick_start.index(SETUP) < quick_start.index(TEST_COMMAND), "both in Quick start, the demo first"


def test_docs_configuration_documents_every_setting() -> None:
    table = CONFIGURATION
    for name, field in Settings.model_fields.items():
        choices = getattr(field.validation_alias, "choices", [])
        variable = next(c for c in choices if isinstance(c, str) and c.isupper())
        assert f"| `{variable}` |" in table, f"{variable} ({name}) is missing from the configuration table"


def test_docs_configuration_states_every_settings_real_default_once() -> None:
    """One row per variable, and a setting with a value by default shows that value in its row's default column."""
    table = CONFIGURATION
    for field in Settings.model_fields.values():
        variable = next(c for c in getattr(field.validation_alias, "choices", []) if c.isupper())
        rows = [line for line in table.splitlines() if line.startswith(f"| `{variable}` |")]
        assert len(rows) == 1, f"{variable} has {len(rows)} rows in the configuration table"
        default = field.default
        if default is None or default is False:  # unset: the row says what that means
            continue
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        assert f"`{shown}`" in rows[0].rsplit("|", 2)[1], f"{variable}'s default is {shown}, not what its row says"


@pytest.mark.anyio
async def test_readme_and_docs_tools_document_every_tool_input_and_output_field() -> None:
    """README's tool table names every tool and its inputs; with docs/tools.md, every field of every result."""
    server = build_server(Settings(_env_file=None))
    tools = {tool.name: tool for tool in await server.list_tools()}
    table = README[README.index("## Tools") : README.index("## Resources and prompts")]
    for name, tool in tools.items():
        assert f"| `{name}` |" in table, f"tool {name} is missing from the tool table"
        for argument in tool.input_schema.get("properties", {}):
            assert f"`{argument}" in table, f"{name}'s input {argument} is not documented"
    section = table + DOCS["docs/tools.md"]
    results: list[type[BaseModel]] = [
        models.ChatResult,
        models.LexiResult,
        ScenarioResult,
        models.Conversation,
        models.ConversationMessages,
        models.Message,
        models.StreamError,
        models.ToolStep,
        models.RateLimit,
        LexiContext,
        ScenarioError,
        HistoryPage,
        EscalationList,
        Escalation,
    ]
    for model in results:
        for field in model.model_fields:
            assert re.search(rf"(`|\{{|, ){field}\b", section), f"{model.__name__}.{field} is not documented"
    for reason in ("timeout", "connection_lost", "ended_without_done", "reply_too_large"):
        assert f"`{reason}`" in section


def test_readme_and_docs_commands_use_only_real_options() -> None:
    parser = build_parser()
    options = {o for action in parser._actions for o in action.option_strings}
    subparsers = next(a for a in parser._actions if a.choices and "sandbox" in a.choices)
    assert isinstance(subparsers.choices, dict)
    for sub in subparsers.choices.values():
        options |= {o for action in sub._actions for o in action.option_strings}
    lines = []
    for text in EVERY_PAGE.values():
        lines += [line for block in code_blocks(text) for line in block.splitlines()]
        lines += re.findall(r"`(lexey-mcp [^`]*)`", text)
    used = {
        flag
        for line in lines
        if line.lstrip().startswith("lexey-mcp")
        for flag in re.findall(r"(?<!\S)(--?[a-z][a-z-]*)", line.split("#")[0])
    }
    assert used, "no lexey-mcp command found in the README or docs/"
    assert used <= options, f"unknown options in README or docs/: {used - options}"
    assert {"--transport", "--host", "--port", "--stateless", "--sandbox", "--toolsets", "--read-only"} <= used


def test_changelog_follows_keep_a_changelog_and_matches_the_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "Keep a Changelog" in changelog
    assert "## [Unreleased]" in changelog
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", changelog, re.M)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert released[0] == lexey_mcp.__version__ == project["version"]
    assert "### Added" in changelog


@pytest.mark.e2e
def test_python_m_lexey_mcp_is_the_console_script() -> None:
    script = str(Path(sys.executable).parent / "lexey-mcp")
    for args in (["--help"], ["--version"]):
        via_module = subprocess.run(
            [sys.executable, "-m", "lexey_mcp", *args],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=30,
            check=False,
        )
        via_script = subprocess.run(
            [script, *args], capture_output=True, text=True, env=clean_env(), timeout=30, check=False
        )
        assert via_module.returncode == via_script.returncode == 0
        assert via_module.stdout == via_script.stdout
        assert via_module.stdout.startswith("usage: lexey-mcp") or via_module.stdout == "lexey-mcp 0.1.0\n"


def pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """This venv's pip, installing into the venv of `python` (which has no pip of its own: faster to create)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def new_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    return path / "bin" / "python"


@pytest.mark.e2e
def test_the_wheel_installs_in_a_fresh_venv_and_runs_the_demo(tmp_path: Path) -> None:
    # `python -m build` in a throwaway venv. That venv is the isolation, so --no-isolation saves two more.
    builder = new_venv(tmp_path / "build-venv")
    backend = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    installed = pip(builder, "build", *backend)
    if installed.returncode != 0:
        if NO_INDEX.search(installed.stderr):
            require("wheel", f"pip cannot reach a package index: {installed.stderr.strip().splitlines()[-1]}")
        raise AssertionError(installed.stderr)
    built = subprocess.run(
        [str(builder), "-m", "build", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = list((tmp_path / "dist").glob("*.whl"))
    assert [w.name for w in wheels] == [f"lexey_mcp-{lexey_mcp.__version__}-py3-none-any.whl"]

    # A fresh venv with nothing but the wheel and its dependencies.
    python = new_venv(tmp_path / "fresh")
    installed = pip(python, str(wheels[0]))
    assert installed.returncode == 0, installed.stderr
    env = clean_env(PATH="/usr/bin:/bin")  # the dev venv is not on PATH
    where = subprocess.run(
        [str(python), "-c", "import lexey_mcp; print(lexey_mcp.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=True,
    )
    assert where.stdout.startswith(str(tmp_path / "fresh")), "the wheel, not the work tree, must be imported"
    typed = tmp_path / "fresh" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert (typed / "lexey_mcp" / "py.typed").exists()
    assert not (typed / "tests").exists()
    demo = subprocess.run(
        [str(tmp_path / "fresh" / "bin" / "lexey-mcp"), "demo"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "escalated: yes; every reply complete: yes" in demo.stdout


def test_readme_module_map_names_every_module_and_imports_only_point_down() -> None:
    """README "Development": every top-level module or package is in the map, and each row imports only from rows
    below it (entry points aside), but for the client's reports to observability/."""
    table = README[README.index("The package has one module per concern") :]
    rows = [re.findall(r"`([a-z_]+)(?:\.py|/)`", line) for line in table.splitlines()[4:] if line.startswith("| `")]
    rank = {module: i for i, row in enumerate(rows) for module in row}
    package = REPO / "lexey_mcp"
    modules = {p.stem for p in package.glob("*.py")} | {p.parent.name for p in package.glob("*/__init__.py")}
    assert modules - {"__init__", "__main__"} == set(rank)
    upward = []
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level):
                continue
            inside = list(parts[:-1])[: len(parts) - node.level]
            target = [*inside, *(node.module.split(".") if node.module else [])]
            if target and target[0] != parts[0] and rank[target[0]] < rank[parts[0]]:
                upward.append(f"{'.'.join(parts)} imports {'.'.join(target)}")
    assert upward == ["client imports observability"]


def test_the_documented_http_paths_are_the_served_ones() -> None:
    """The paths hosts, proxies and probes are told to use (README and docs/) are the ones `lexey_mcp.paths` states:
    renaming a route there without telling the reader fails here."""
    docs = "\n".join([README, *(p.read_text() for p in sorted((REPO / "docs").glob("*.md")))])
    for method, path in (
        ("GET", HEALTH_PATH),
        ("GET", READY_PATH),
        ("GET", METRICS_PATH),
        ("POST", WEBHOOK_PATH),
    ):
        assert f"`{method} {path}`" in docs, path
    assert f"http://127.0.0.1:8000{MCP_PATH}" in docs
