"""A real external client: the official MCP Inspector CLI (Node) drives `lexey-mcp --sandbox` over stdio.

The Inspector needs Node >= 22.19. `.ci/run` installs Node 22 and the Inspector from `.ci/node/package-lock.json`
into `.ci/node/node_modules`; elsewhere the tests use an `mcp-inspector` on PATH if Node there is recent enough,
and skip otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.documentation import EVERY_PAGE
from tests.processes import clean_env
from tests.reading import TOOL_NAMES
from tests.test_examples import require

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
CI_NODE = REPO / ".ci" / "node" / "node_modules"
SERVER = [str(Path(sys.executable).parent / "lexey-mcp"), "--sandbox"]
MIN_NODE = (22, 19)


def node_version(node: str) -> tuple[int, ...]:
    done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False)
    try:
        return tuple(int(part) for part in done.stdout.strip().lstrip("v").split("."))
    except ValueError:
        return ()


def find_inspector() -> tuple[list[str], str] | str:
    """(the command that runs the Inspector, Node's bin directory), or why there is none."""
    package = CI_NODE / "@modelcontextprotocol" / "inspector" / "package.json"
    ci_node = CI_NODE / "node" / "bin" / "node"
    if package.exists() and ci_node.exists():
        launcher = package.parent / json.loads(package.read_text())["bin"]["mcp-inspector"]
        return [str(ci_node), str(launcher)], str(ci_node.parent)
    node, inspector = shutil.which("node"), shutil.which("mcp-inspector")
    if node is None or inspector is None:
        return "the MCP Inspector CLI is not installed (.ci/run installs Node 22 and it into .ci/node/node_modules)"
    if node_version(node) < MIN_NODE:
        return f"the MCP Inspector needs Node >= {'.'.join(map(str, MIN_NODE))}; {node} is older"
    return [node, inspector], str(Path(node).parent)


@pytest.fixture(scope="module")
def inspector() -> tuple[list[str], str]:
    found = find_inspector()
    if isinstance(found, str):
        require("inspector", found)
    return found


def inspect(inspector: tuple[list[str], str], home: Path, *args: str, status: int = 0) -> Any:
    """Run `mcp-inspector --cli <server> <args>` and parse the JSON result it prints (it exits 5 on isError)."""
    command, node_bin = inspector
    env = clean_env(HOME=str(home), PATH=f"{node_bin}{os.pathsep}{os.environ.get('PATH', '')}", NO_COLOR="1")
    done = subprocess.run(
        [*command, "--cli", *SERVER, *args], capture_output=True, text=True, env=env, timeout=120, cwd=home, check=False
    )
    assert done.returncode == status, f"inspector exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def test_inspector_lists_the_six_tools(inspector: tuple[list[str], str], tmp_path: Path) -> None:
    result = inspect(inspector, tmp_path, "--method", "tools/list")
    tools = {tool["name"]: tool for tool in result["tools"]}
    assert set(tools) == TOOL_NAMES
    for tool in tools.values():
        assert tool["title"]
        assert tool["inputSchema"]["type"] == "object"
        assert tool["outputSchema"]["type"] == "object"
        assert set(tool["annotations"]) == {"readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"}
    assert tools["get_conversation_messages"]["annotations"]["readOnlyHint"] is True


def test_inspector_calls_send_customer_message(inspector: tuple[list[str], str], tmp_path: Path) -> None:
    result = inspect(
        inspector,
        tmp_path,
        "--method",
        "tools/call",
        "--tool-name",
        "send_customer_message",
        "--tool-arg",
        "message=Hello, what can you help me with?",
    )
    assert result["isError"] is False
    structured = result["structuredContent"]
    assert structured["outcome"] == "complete"
    assert structured["text"]
    assert "missing_event_ids" not in structured  # none missing: a field at its default is left out
    uuid.UUID(structured["conversation_id"])
    assert result["content"][0]["text"].startswith("[Support agent reply; outcome complete")


def test_inspector_sees_a_tool_error_as_a_result(inspector: tuple[list[str], str], tmp_path: Path) -> None:
    result = inspect(
        inspector,
        tmp_path,
        "--method",
        "tools/call",
        "--tool-name",
        "get_conversation_messages",
        "--tool-arg",
        "conversation_id=not-a-uuid",
        status=5,
    )
    assert result["isError"] is True
    assert result["content"][0]["text"].startswith("conversation_id must be a UUID")


def test_the_docs_pin_the_inspector_ci_runs_and_the_node_it_needs() -> None:
    """Unpinned, npx picked Inspector 0.15.0 on Node 20, which fails on these commands: every command in README.md
    and docs/ names the version CI installs, and each page with one says which Node that version declares."""
    lock = json.loads((REPO / ".ci" / "node" / "package-lock.json").read_text())
    inspector = lock["packages"]["node_modules/@modelcontextprotocol/inspector"]
    minimum = re.fullmatch(r">=(\d+)\.(\d+)\.0", inspector["engines"]["node"])
    assert minimum is not None
    commands = []
    for name, text in EVERY_PAGE.items():
        on_page = re.findall(r"npx -y (@modelcontextprotocol/inspector\S*)", text)
        if on_page:
            assert f"Node {minimum[1]}.{minimum[2]} or later" in text, f"{name} does not say which Node it needs"
        commands += on_page
    assert len(commands) >= 3
    assert set(commands) == {f"@modelcontextprotocol/inspector@{inspector['version']}"}
