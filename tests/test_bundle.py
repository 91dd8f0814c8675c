"""Distribution: the MCP Bundle (manifest.json, built by scripts/build_bundle.py), the registry entries
(server.json; examples/hosting/server.json for a team's remote), the icons, and the one version they all carry.

The e2e test builds the bundle with the official `mcpb` CLI, unpacks it, asks the CLI's own
`getMcpConfigForManifest` (the code Claude Desktop uses) how a host starts the server with a user's settings, starts
it that way (through uv, as a host runs a `uv` bundle) and talks to it over stdio.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

import anyio
import jsonschema  # type: ignore[import-untyped]  # mcp's dependency; it ships no types
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import TextContent
from pydantic import AliasChoices

import lexey_mcp
from lexey_mcp.config import Settings
from lexey_mcp.hosting import KEY_HEADERS
from lexey_mcp.icons import ICON_FILES
from lexey_mcp.paths import MCP_PATH
from lexey_mcp.sandbox import Sandbox, SandboxConfig
from lexey_mcp.server import TOOLS, build_server
from lexey_mcp.toolsets import TOOLSETS
from lexey_mcp.vendor import API
from tests.documentation import README
from tests.processes import clean_env
from tests.reading import TOOL_NAMES
from tests.streams import CUSTOMER_KEY
from tests.test_examples import require

REPO = Path(__file__).resolve().parents[1]
CI_NODE = REPO / ".ci" / "node" / "node_modules"
MCPB = CI_NODE / "@anthropic-ai" / "mcpb"
ICONS = REPO / "lexey_mcp" / "icons"
SCHEMA = REPO / "registry" / "server.schema.json"
#: The user_config key of each API's key.
KEY_SETTINGS = {"customer": "customer_key", "management": "management_key", "lexi": "lexi_api_key"}


def load(path: Path) -> Any:
    return json.loads(path.read_text())


MANIFEST = load(REPO / "manifest.json")
SERVER_JSON = load(REPO / "server.json")
TEAM_SERVER_JSON = load(REPO / "examples" / "hosting" / "server.json")
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_one_version_for_the_package_the_bundle_and_the_registry() -> None:
    version = PROJECT["version"]
    assert lexey_mcp.__version__ == version
    assert MANIFEST["version"] == version
    assert SERVER_JSON["version"] == version
    assert [package["version"] for package in SERVER_JSON["packages"]] == [version]
    assert TEAM_SERVER_JSON["version"] == version


@pytest.mark.parametrize("entry", [SERVER_JSON, TEAM_SERVER_JSON], ids=["server.json", "team-remote"])
def test_registry_entries_follow_the_registrys_published_schema(entry: dict[str, Any]) -> None:
    schema = load(SCHEMA)
    assert entry["$schema"] == schema["$id"]  # the schema kept in the repo is the one the entry names
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(entry)]
    assert errors == []


def test_the_schema_check_catches_a_broken_entry() -> None:
    # The validation above can fail: a ranged package version and a missing transport are both refused.
    broken = json.loads(json.dumps(SERVER_JSON))
    del broken["packages"][0]["transport"]
    broken["description"] = "x" * 101
    validator = jsonschema.Draft7Validator(load(SCHEMA), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    assert len(list(validator.iter_errors(broken))) == 2


def test_registry_entry_runs_the_pypi_package_over_stdio_with_its_keys_secret() -> None:
    (package,) = SERVER_JSON["packages"]
    assert (package["registryType"], package["identifier"], package["transport"]) == (
        "pypi",
        PROJECT["name"],
        {"type": "stdio"},
    )
    variables = {variable["name"]: variable for variable in package["environmentVariables"]}
    read = {
        str(c)
        for f in Settings.model_fields.values()
        if isinstance(f.validation_alias, AliasChoices)
        for c in f.validation_alias.choices
    }
    assert set(variables) <= read  # every variable is one the server reads
    for facts in API.values():
        key = variables.pop(facts.key_variable)
        assert key["isSecret"] is True
        assert key["isRequired"] is False
        assert f"starts {facts.key_prefix}" in key["description"]
    assert not any(variable.get("isSecret") for variable in variables.values())
    defaults = Settings(_env_file=None)
    assert variables["LEXEY_BASE_URL"]["default"] == defaults.base_url
    assert variables["LEXI_BASE_URL"]["default"] == defaults.lexi_base_url
    # The registry checks a PyPI package's ownership by this line in its description (the README).
    assert f"<!-- mcp-name: {SERVER_JSON['name']} -->" in README


def test_team_remote_sends_the_headers_the_server_reads() -> None:
    (remote,) = TEAM_SERVER_JSON["remotes"]
    assert remote["type"] == "streamable-http"
    assert remote["url"].endswith(MCP_PATH)
    headers = {header["name"]: header for header in remote["headers"]}
    assert set(headers) == {"Authorization", *KEY_HEADERS.values()}
    assert all(header["isSecret"] for header in headers.values())
    for kind, name in KEY_HEADERS.items():
        assert f"starts {API[kind].key_prefix}" in headers[name]["description"]


def test_manifest_settings_reach_the_server_as_it_reads_them() -> None:
    config = MANIFEST["server"]["mcp_config"]
    settings = MANIFEST["user_config"]
    env = config["env"]
    for kind, facts in API.items():
        name = KEY_SETTINGS[kind]
        option = settings[name]
        assert (option["type"], option["sensitive"], option["required"]) == ("string", True, False)
        # An empty default, so a key left blank reaches the server as unset, not as "${user_config.…}".
        assert option["default"] == ""
        assert facts.key_prefix in option["description"]
        assert env[facts.key_variable] == f"${{user_config.{name}}}"
    defaults = Settings(_env_file=None)
    assert settings["base_url"]["default"] == defaults.base_url
    assert env["LEXEY_BASE_URL"] == "${user_config.base_url}"
    assert settings["lexi_base_url"]["default"] == defaults.lexi_base_url
    assert env["LEXI_BASE_URL"] == "${user_config.lexi_base_url}"
    assert (settings["read_only"]["type"], settings["read_only"]["default"]) == ("boolean", False)
    assert env["LEXEY_READ_ONLY"] == "${user_config.read_only}"
    assert settings["toolsets"]["default"] == ",".join(TOOLSETS)
    assert "--toolsets=${user_config.toolsets}" in config["args"]


def test_manifest_lists_every_tool_and_states_compatibility() -> None:
    assert [tool["name"] for tool in MANIFEST["tools"]] == [spec.fn.__name__ for spec in TOOLS]
    assert {tool["name"] for tool in MANIFEST["tools"]} == TOOL_NAMES
    assert MANIFEST["manifest_version"] == "0.4"
    assert MANIFEST["server"]["type"] == "uv"
    assert MANIFEST["compatibility"]["runtimes"]["python"] == PROJECT["requires-python"]
    assert set(MANIFEST["compatibility"]["platforms"]) == {"darwin", "win32", "linux"}
    assert (REPO / MANIFEST["server"]["entry_point"]).is_file()


def test_manifest_icons_are_pngs_of_their_stated_size() -> None:
    assert MANIFEST["icon"] in {icon["src"] for icon in MANIFEST["icons"]}
    for icon in MANIFEST["icons"]:
        width, height = png_size((REPO / icon["src"]).read_bytes())
        assert f"{width}x{height}" == icon["size"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_server_sends_its_icons(mode: str) -> None:
    async with Client(build_server(Settings(_env_file=None)), mode=mode) as client:
        info = client.server_info
    assert info is not None
    assert info.icons is not None
    sent = {icon.mime_type: icon for icon in info.icons}
    assert set(sent) == {mime for _, mime, _ in ICON_FILES}
    for name, mime, size in ICON_FILES:
        prefix = f"data:{mime};base64,"
        assert sent[mime].src.startswith(prefix)
        assert base64.b64decode(sent[mime].src.removeprefix(prefix)) == (ICONS / name).read_bytes()
        assert sent[mime].sizes == [size]
    assert png_size((ICONS / "lexey-mcp.png").read_bytes()) == (128, 128)
    assert b"<svg" in (ICONS / "lexey-mcp.svg").read_bytes()


# The bundle, end to end: the official CLI builds and unpacks it, the official config code says how to start it.


def node_and_mcpb() -> tuple[str, Path]:
    node = CI_NODE / "node" / "bin" / "node"
    if not (MCPB / "package.json").exists() or not node.exists():
        require("bundle", "the mcpb CLI is not installed (.ci/run installs it and Node 22 into .ci/node/node_modules)")
    return str(node), MCPB


def uv_path() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if found is None:
        require("bundle", "uv is not installed (pip install uv; the test extras include it)")
    return found


HOST_CONFIG = """
import { readFileSync } from "node:fs";
const [mcpb, dir, userConfig] = process.argv.slice(1);
const { getMcpConfigForManifest } = await import(mcpb);
const manifest = JSON.parse(readFileSync(`${dir}/manifest.json`, "utf-8"));
const config = await getMcpConfigForManifest({
  manifest, extensionPath: dir, userConfig: JSON.parse(userConfig), pathSeparator: "/",
  systemDirs: { HOME: process.env.HOME, DESKTOP: "", DOCUMENTS: "", DOWNLOADS: "" },
});
console.log(JSON.stringify(config));
"""


async def host_config(node: str, mcpb: Path, bundle: Path, user_config: dict[str, Any]) -> dict[str, Any]:
    """What the mcpb library (the code Claude Desktop uses) makes of the manifest and a user's settings."""
    index = (mcpb / "dist" / "index.js").as_uri()
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [node, "--input-type=module", "-e", HOST_CONFIG, index, str(bundle), json.dumps(user_config)]
        )
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def host_env(home: Path, **settings: str) -> dict[str, str]:
    """A host's environment for a server it starts: what hosts pass (PATH, HOME), uv's cache and this machine's
    certificates (uv finds them with UV_NATIVE_TLS), and the server's settings."""
    outside = {k: v for k, v in clean_env().items() if k in {"PATH", "SSL_CERT_FILE", "UV_CACHE_DIR"}}
    cache = Path(os.environ.get("HOME", str(home))) / ".cache" / "uv"  # shared across runs: a download happens once
    return {"UV_CACHE_DIR": str(cache), **outside, "HOME": str(home), "UV_NATIVE_TLS": "1", **settings}


async def tools_and_first_call(params: StdioServerParameters) -> tuple[set[str], dict[str, Any] | None]:
    """Start the server, list the tools, and call create_conversation if it is there; return the tool names and the
    call's structured result."""
    async with Client(params) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        created = None
        if "create_conversation" in names:
            result = await client.call_tool("create_conversation", {})
            block = result.content[0]
            assert isinstance(block, TextContent)
            assert not result.is_error, block.text
            created = result.structured_content
    return names, created


def as_host_starts(config: dict[str, Any], uv: str, home: Path) -> StdioServerParameters:
    """A uv bundle's server as a host starts it: the host's own uv, with the manifest's arguments and environment."""
    assert config["command"] == "uv"
    return StdioServerParameters(command=uv, args=config["args"], env=host_env(home, **config["env"]))


@pytest.mark.e2e
@pytest.mark.anyio
async def test_bundle_builds_unpacks_and_runs_as_its_manifest_says(tmp_path: Path) -> None:
    node, mcpb = node_and_mcpb()
    uv = uv_path()
    env = {**clean_env(), "PATH": f"{Path(uv).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    # The README's command, as written.
    with anyio.fail_after(600):
        built = await anyio.run_process(
            [sys.executable, "scripts/build_bundle.py", "--out", str(tmp_path / "dist")], cwd=REPO, env=env, check=False
        )
    assert built.returncode == 0, (built.stdout + built.stderr).decode()
    bundle_file = tmp_path / "dist" / f"lexey-mcp-{PROJECT['version']}.mcpb"
    assert bundle_file.stat().st_size < 1024 * 1024  # a uv bundle carries no dependencies
    unpacked = tmp_path / "installed"
    with anyio.fail_after(60):
        await anyio.run_process(
            [node, str(mcpb / "dist" / "cli" / "cli.js"), "unpack", str(bundle_file), str(unpacked)]
        )
    assert load(unpacked / "manifest.json") == MANIFEST
    assert (unpacked / "uv.lock").is_file()
    home = tmp_path / "home"
    home.mkdir()

    async with Sandbox(SandboxConfig(delay=0)) as sb:
        # A user who filled in a customer key and the sandbox's URL, and chose two toolsets.
        chosen = {"customer_key": CUSTOMER_KEY, "base_url": sb.base_url, "toolsets": "customer,events"}
        config = await host_config(node, mcpb, unpacked, chosen)
        assert config["env"]["LEXEY_MANAGEMENT_KEY"] == ""
        assert config["env"]["LEXEY_READ_ONLY"] == "false"
        names, created = await tools_and_first_call(as_host_starts(config, uv, home))
        assert names == {spec.fn.__name__ for spec in TOOLS if spec.toolset in {"customer", "events"}}
        # The call reached the sandbox with the customer key: the URL and the key arrived.
        assert created is not None
        assert uuid.UUID(created["conversation_id"])
        assert [(r.method, r.key_type) for r in sb.requests_log] == [("POST", "customer")]

        # Read-only, everything else left at its default: the two tools that change nothing.
        config = await host_config(node, mcpb, unpacked, {"read_only": True})
        names, _ = await tools_and_first_call(as_host_starts(config, uv, home))
        assert names == {"get_conversation_messages", "list_escalations"}


@pytest.mark.e2e
@pytest.mark.anyio
async def test_registry_entry_runs_as_a_registry_client_starts_it(tmp_path: Path) -> None:
    # What a client makes of server.json: `uvx <identifier>==<version>` (runtimeHint uvx), the user's values in the
    # environment variables it names. The package is not on PyPI yet, so uvx also finds it in a directory (the wheel
    # built from this checkout); its dependencies come from the package index, as for a real user.
    uv = uv_path()
    (package,) = SERVER_JSON["packages"]
    assert package["runtimeHint"] == "uvx"
    wheels = tmp_path / "wheels"
    with anyio.fail_after(600):
        built = await anyio.run_process(
            [uv, "build", "--wheel", "--out-dir", str(wheels), str(REPO)], env=host_env(tmp_path), check=False
        )
    assert built.returncode == 0, (built.stdout + built.stderr).decode()
    home = tmp_path / "home"
    home.mkdir()
    async with Sandbox(SandboxConfig(delay=0)) as sb:
        named = {variable["name"] for variable in package["environmentVariables"]}
        values = {"LEXEY_CUSTOMER_KEY": CUSTOMER_KEY, "LEXEY_BASE_URL": sb.base_url, "LEXEY_READ_ONLY": "false"}
        assert set(values) <= named
        # --refresh-package: this checkout's wheel, never one uv cached from an earlier run of the same version.
        found_here = ["--find-links", str(wheels), "--refresh-package", package["identifier"]]
        args = ["tool", "run", *found_here, f"{package['identifier']}=={package['version']}"]
        names, created = await tools_and_first_call(
            StdioServerParameters(command=uv, args=args, env=host_env(home, **values))
        )
        assert names == TOOL_NAMES
        assert created is not None
        assert [(r.method, r.key_type) for r in sb.requests_log] == [("POST", "customer")]
