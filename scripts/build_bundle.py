"""Build the MCP Bundle, dist/lexey-mcp-<version>.mcpb, with the official `mcpb` CLI:

    python scripts/build_bundle.py

The bundle holds manifest.json, pyproject.toml, README.md, the lexey_mcp package and a uv.lock. The manifest's
server type is `uv`: the host (Claude Desktop) runs its own uv, which fetches Python and installs the
dependencies, so the user needs neither. uv.lock is resolved here with requirements.lock as constraints: a host
installs exactly the versions CI tests. Needs uv (`pip install uv`) and the mcpb CLI, which `.ci/run` installs
into .ci/node/node_modules (`npm ci --prefix .ci/node`), or `mcpb` on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CI_NODE = REPO / ".ci" / "node" / "node_modules"
#: What the bundle holds, besides the uv.lock made here (the package's own files come from lexey_mcp/).
FILES = ("manifest.json", "README.md", "pyproject.toml")


def version() -> str:
    """The one version: pyproject.toml's. manifest.json and server.json must say the same."""
    project: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project["version"]


def mcpb_command() -> list[str]:
    """The mcpb CLI: .ci/node's (run on .ci/node's Node 22), else `mcpb` on PATH."""
    cli = CI_NODE / "@anthropic-ai" / "mcpb" / "dist" / "cli" / "cli.js"
    node = CI_NODE / "node" / "bin" / "node"
    if cli.exists() and node.exists():
        return [str(node), str(cli)]
    found = shutil.which("mcpb")
    if found is None:
        sys.exit(
            "build_bundle: the mcpb CLI is missing: run `npm ci --prefix .ci/node` (or npm i -g @anthropic-ai/mcpb)"
        )
    return [found]


def uv_command() -> str:
    beside_python = Path(sys.executable).parent / "uv"
    found = shutil.which("uv") or (str(beside_python) if beside_python.exists() else None)
    if found is None:
        sys.exit("build_bundle: uv is missing: `pip install uv`")
    return found


def constraints() -> list[str]:
    """requirements.lock's pins (markers kept), for uv.lock: the versions CI installs and tests."""
    lines = (REPO / "requirements.lock").read_text().splitlines()
    return [line.strip() for line in lines if line and not line.startswith((" ", "#", "-"))]


def stage(into: Path) -> None:
    for name in FILES:
        shutil.copy2(REPO / name, into / name)
    shutil.copytree(REPO / "lexey_mcp", into / "lexey_mcp", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pins = constraints()
    hatchling = [pin for pin in pins if pin.startswith("hatchling==")]
    with (into / "pyproject.toml").open("a") as pyproject:
        pyproject.write(
            "\n# Added by scripts/build_bundle.py: uv.lock takes the versions requirements.lock pins.\n[tool.uv]\n"
            f"constraint-dependencies = {json.dumps(pins)}\nbuild-constraint-dependencies = {json.dumps(hatchling)}\n"
        )
    subprocess.run([uv_command(), "lock", "--quiet", "--directory", str(into)], check=True)


def build(out_dir: Path) -> Path:
    expected = version()
    for name in ("manifest.json", "server.json"):
        said = json.loads((REPO / name).read_text())["version"]
        if said != expected:
            sys.exit(f"build_bundle: {name} says version {said}, pyproject.toml {expected}: make them equal")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"lexey-mcp-{expected}.mcpb"
    mcpb = mcpb_command()
    env = {**os.environ, "NO_COLOR": "1"}
    with tempfile.TemporaryDirectory(prefix="lexey-mcp-bundle-") as tmp:
        staged = Path(tmp)
        stage(staged)
        subprocess.run([*mcpb, "validate", str(staged / "manifest.json")], check=True, env=env)
        target.unlink(missing_ok=True)
        subprocess.run([*mcpb, "pack", str(staged), str(target)], check=True, env=env)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="directory for the .mcpb (default: dist/)")
    target = build(parser.parse_args().out)
    print(f"{target} ({target.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
