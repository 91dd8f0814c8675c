"""Every host configuration in examples/hosts/ is valid for its host, keeps keys out, and launches a working server.

Each config names a command (`lexey-mcp`): the test launches it, with `--sandbox` added when absent and the
venv's console script substituted, and lists the tools over stdio with `mcp.Client`. The Claude Code scripts are
run with a stand-in `claude` that records its arguments, parsed the way Claude Code parses them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from lexey_mcp.config import Settings
from tests.documentation import EVERY_PAGE, README
from tests.processes import clean_env
from tests.reading import TOOL_NAMES

REPO = Path(__file__).resolve().parents[1]
HOSTS = REPO / "examples" / "hosts"
SCRIPT = str(Path(sys.executable).parent / "lexey-mcp")  # the console script of the venv running the tests
JSON_CONFIGS = sorted(p.relative_to(HOSTS).as_posix() for p in HOSTS.glob("*/*.json"))
CLAUDE_SCRIPTS = sorted(p.relative_to(HOSTS).as_posix() for p in HOSTS.glob("claude-code/*.sh"))
SHELL_KEYS = {
    "LEXEY_CUSTOMER_KEY": "lxc_from_shell",
    "LEXEY_MANAGEMENT_KEY": "lxm_from_shell",
    "LEXI_API_KEY": "wbk_from_shell",
}
KEY_VARIABLES = {"LEXEY_CUSTOMER_KEY", "LEXEY_MANAGEMENT_KEY", "LEXI_API_KEY"}
#: A literal key: a prefix followed by key characters (a placeholder such as "<your lxc_ key>" is not one).
LITERAL_KEY = re.compile(r"\b(lxc|lxm|wbk)_[A-Za-z0-9]")
#: How each host refers to a secret without containing it.
REFERENCE = {
    "vscode": re.compile(r"^\$\{input:(?P<id>[a-z0-9-]+)\}$"),
    "cursor": re.compile(r"^\$\{env:(?P<name>[A-Z_]+)\}$"),
    "claude-code": re.compile(r"^\$\{(?P<name>[A-Z_]+)(:-)?\}$"),
    "claude-desktop": re.compile(r"^<your (lxc|lxm|wbk)_ [^<>]+>$"),  # no env references: an obvious placeholder
}


def setting_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        choices = getattr(alias, "choices", [])
        names.update(str(c) for c in choices if isinstance(c, str) and c.isupper())
    return names


def servers_of(host: str, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    key = "servers" if host == "vscode" else "mcpServers"
    assert set(config) <= {key, "inputs"}, f"unexpected top-level keys {set(config)}"
    servers: dict[str, dict[str, Any]] = config[key]
    assert servers, "no server defined"
    return servers


def check_entry(host: str, name: str, entry: dict[str, Any], config: dict[str, Any], sandbox: bool) -> None:
    assert entry["command"] == "lexey-mcp"
    assert isinstance(entry.get("args", []), list)
    if host == "vscode":
        assert entry["type"] == "stdio"
    env: dict[str, str] = entry.get("env", {})
    if sandbox:
        assert "--sandbox" in entry["args"]
        assert not env, "a sandbox variant needs no keys"
        assert name == "lexey-sandbox"
        return
    assert name == "lexey"
    assert set(env) == KEY_VARIABLES, "the real-keys variant sets the three keys"
    inputs = {i["id"]: i for i in config.get("inputs", [])}
    for variable, value in env.items():
        match = REFERENCE[host].match(value)
        assert match, f"{variable}={value!r} is not a {host} reference or placeholder"
        if "name" in match.groupdict():
            assert match["name"] == variable
        if "id" in match.groupdict():
            assert inputs[match["id"]]["type"] == "promptString"
            assert inputs[match["id"]]["password"] is True


async def list_tools(command: str, args: list[str], env: dict[str, str]) -> set[str]:
    if "--sandbox" not in args:
        args = [*args, "--sandbox"]
    executable = SCRIPT if command == "lexey-mcp" else command
    params = StdioServerParameters(command=executable, args=args, env=clean_env(**env))
    async with Client(params) as client:
        return {tool.name for tool in (await client.list_tools()).tools}


@pytest.mark.parametrize("path", JSON_CONFIGS)
def test_json_config_is_valid_for_its_host(path: str) -> None:
    host = path.split("/")[0]
    text = (HOSTS / path).read_text()
    assert not LITERAL_KEY.search(text), "a host config must never contain a key"
    config = json.loads(text)
    for name, entry in servers_of(host, config).items():
        check_entry(host, name, entry, config, sandbox="sandbox" in path)
        assert set(entry.get("env", {})) <= setting_names()


def claude_mcp_add(argv: list[str]) -> tuple[str, dict[str, str], list[str]]:
    """(name, env, command) from `claude mcp add …` argv, parsed as Claude Code's CLI parses it (variadic --env)."""
    assert argv[:2] == ["mcp", "add"], argv
    rest = argv[2:]
    split = rest.index("--")
    options, command = rest[:split], rest[split + 1 :]
    positional: list[str] = []
    env: dict[str, str] = {}
    i = 0
    while i < len(options):
        token = options[i]
        if token in ("-e", "--env"):  # takes every following value up to the next option: a name there is lost
            i += 1
            while i < len(options) and not options[i].startswith("-"):
                key, sep, value = options[i].partition("=")
                assert sep, f"Invalid environment variable format: {options[i]}"
                env[key] = value
                i += 1
            continue
        if token in ("-t", "--transport", "-s", "--scope"):
            assert options[i + 1] in ({"stdio", "http", "sse"} if "t" in token else {"local", "project", "user"})
            i += 2
            continue
        assert not token.startswith("-"), f"unknown option {token}"
        positional.append(token)
        i += 1
    assert len(positional) == 1, f"expected one server name, got {positional}"
    return positional[0], env, command


def run_claude_script(path: str, tmp_path: Path) -> tuple[str, dict[str, str], list[str]]:
    """Run a Claude Code script with a stand-in `claude` on PATH; what `claude mcp add` was asked to add."""
    recorded = tmp_path / "argv.json"
    fake = tmp_path / "bin" / "claude"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(recorded)!r}, 'w'))\n")
    fake.chmod(0o755)
    env = clean_env(**SHELL_KEYS)
    env["PATH"] = f"{fake.parent}:{env['PATH']}"
    done = subprocess.run(["sh", str(HOSTS / path)], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return claude_mcp_add(json.loads(recorded.read_text()))


@pytest.mark.parametrize("path", CLAUDE_SCRIPTS)
@pytest.mark.e2e
def test_claude_code_script_adds_the_right_server(path: str, tmp_path: Path) -> None:
    name, server_env, command = run_claude_script(path, tmp_path)
    assert command[0] == "lexey-mcp"
    if "sandbox" in path:
        assert (name, server_env, command[1:]) == ("lexey-sandbox", {}, ["--sandbox"])
    else:
        assert (name, server_env, command[1:]) == ("lexey", SHELL_KEYS, [])


@pytest.mark.anyio
@pytest.mark.e2e
async def test_every_host_config_launches_a_server_with_the_six_tools(tmp_path: Path) -> None:
    """All at once: each launch spends over a second importing the SDK."""
    launches: dict[str, tuple[str, list[str], dict[str, str]]] = {}
    for path in JSON_CONFIGS:
        host = path.split("/")[0]
        for name, entry in servers_of(host, json.loads((HOSTS / path).read_text())).items():
            # A host passes an unresolved reference on literally: the server must start all the same.
            launches[f"{path} {name}"] = (entry["command"], entry.get("args", []), entry.get("env", {}))
    for i, path in enumerate(CLAUDE_SCRIPTS):
        (tmp_path / str(i)).mkdir()
        _, env, command = run_claude_script(path, tmp_path / str(i))
        launches[path] = (command[0], command[1:], env)
    results: dict[str, object] = {}

    async def launch(label: str, command: str, args: list[str], env: dict[str, str]) -> None:
        try:
            results[label] = await list_tools(command, args, env)
        except Exception as exc:
            results[label] = exc

    async with anyio.create_task_group() as group:
        for label, spec in launches.items():
            group.start_soon(launch, label, *spec)
    assert len(results) == len(JSON_CONFIGS) + len(CLAUDE_SCRIPTS)
    assert {label: r for label, r in results.items() if r != TOOL_NAMES} == {}


@pytest.mark.e2e
def test_claude_code_script_refuses_to_run_without_keys() -> None:
    done = subprocess.run(
        ["sh", str(HOSTS / "claude-code" / "add.sh")],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "export LEXEY_CUSTOMER_KEY first" in done.stderr


def test_every_host_config_is_in_the_readme() -> None:
    for path in [*JSON_CONFIGS, *CLAUDE_SCRIPTS]:
        assert f"examples/hosts/{path}" in README, f"examples/hosts/{path} is not shown in README.md"


def test_readme_and_docs_json_snippets_are_the_files() -> None:
    files = [json.loads((HOSTS / path).read_text()) for path in JSON_CONFIGS]
    pages = "\n".join(EVERY_PAGE.values())
    snippets = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", pages, re.S)]
    assert snippets
    for snippet in snippets:
        assert snippet in files, f"the docs show a config that is not in examples/hosts: {snippet}"
