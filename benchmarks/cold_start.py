"""Cold start: spawn `lexey-mcp` over stdio, `initialize`, `tools/list`; the same for a bare SDK server.

    .venv/bin/python -m benchmarks.cold_start [--runs N] [--before PATH] [--write]

Both servers run on this interpreter and are timed alike, interleaved: from spawning the process to the
`tools/list` answer, through `mcp.Client(StdioServerParameters(...), mode="legacy")` (legacy mode runs the
`initialize` handshake), every toolset on; wall time, and the server process's CPU time (user + system, from
`getrusage`: steadier than wall time on a shared machine). A third contender is lexey-mcp with its one start-up
lever on the collector turned off (no `gc.disable()` until the server is built), to show what that lever is worth.
`--before PATH` adds lexey-mcp as imported from PATH (a `PYTHONPATH`: a checkout of an earlier commit, with whatever
it needs that this environment lacks), timed alike in the same rounds.
Then `python -X importtime` shows what lexey-mcp imports beyond what the SDK server imports itself, heaviest first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from mcp import Client, StdioServerParameters

from benchmarks._common import header, median, write_section

HERE = Path(__file__).resolve().parent
LEXEY = str(Path(sys.executable).with_name("lexey-mcp"))
# A configured deployment: keys of the right shapes (nothing is sent at start-up), logs at the default level.
# Bytecode caches are allowed (this machine sets PYTHONDONTWRITEBYTECODE): an installed package has them, and
# without them every start recompiles whatever changed since; the warm-up round writes them.
ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "LEXEY_CUSTOMER_KEY": "lxc_coldstart",
    "LEXEY_MANAGEMENT_KEY": "lxm_coldstart",
    "LEXI_API_KEY": "wbk_coldstart",
    "LEXEY_BASE_URL": "http://127.0.0.1:9/api/v1",
}
# lexey-mcp without its collector lever: `gc.disable()` and `gc.freeze()` do nothing.
NO_GC_LEVER = "import gc, sys; gc.disable = gc.freeze = lambda: None; from lexey_mcp.cli import main; sys.exit(main())"
# Where the start-up time of lexey-mcp goes, measured inside one process, in the order `lexey-mcp` takes them: CPU
# time of the process, steadier than wall time on a shared machine.
PHASES = """
import gc, time
t0 = time.process_time()
import lexey_mcp.cli
t1 = time.process_time()
gc.disable()  # as lexey-mcp does once it knows it will serve over stdio
from lexey_mcp import stdio_transport
from lexey_mcp.config import Settings
from lexey_mcp.server import build_server
t2 = time.process_time()
settings = Settings()
t3 = time.process_time()
server = build_server(settings)
t4 = time.process_time()
gc.freeze()
gc.enable()
from mcp.server import MCPServer
bare = MCPServer("bare")
@bare.tool()
async def echo(text: str) -> str:
    return text
t5 = time.process_time()
from lexey_mcp.client import LexeyClient
client = LexeyClient(settings)  # what the server's lifespan makes before it serves anything
t6 = time.process_time()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)
"""
BARE_IMPORT = "import time; t = time.process_time(); from mcp.server import MCPServer; print(time.process_time() - t)"


async def start_to_tools(command: str, args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds to the `tools/list` answer, the server process's CPU seconds, and the tools listed."""
    params = StdioServerParameters(command=command, args=args, env=env)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    async with Client(params, mode="legacy") as client:
        tools = (await client.list_tools()).tools
        took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the server has exited (and been waited for) by now
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return took, cpu, len(tools)


def import_times(statement: str) -> dict[str, tuple[int, int]]:
    """(self, cumulative) import time in µs of each module `statement` imports (`python -X importtime`)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True, env=ENV, check=True
    ).stderr
    times: dict[str, tuple[int, int]] = {}
    for line in out.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| *(\S+)", line)
        if match:
            times[match.group(3)] = int(match.group(1)), int(match.group(2))
    return times


def python(code: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True).stdout
    return [float(x) for x in out.split()]


async def run(runs: int, before: str | None) -> str:
    bare_name = "bare MCPServer, one tool"
    contenders = {
        "lexey-mcp (stdio), every toolset": (LEXEY, [], ENV),
        bare_name: (sys.executable, [str(HERE / "bare_server.py")], ENV),
        "lexey-mcp without its collector lever": (sys.executable, ["-c", NO_GC_LEVER], ENV),
    }
    if before is not None:
        entry = "import sys; from lexey_mcp.__main__ import main; sys.exit(main())"  # PYTHONSAFEPATH: not from cwd
        contenders["lexey-mcp before (`--before`)"] = (
            sys.executable,
            ["-c", entry],
            {**ENV, "PYTHONPATH": before, "PYTHONSAFEPATH": "1"},
        )
    walls: dict[str, list[float]] = {name: [] for name in contenders}
    cpus: dict[str, list[float]] = {name: [] for name in contenders}
    tools: dict[str, int] = {}
    load = os.getloadavg()
    for i in range(runs + 1):
        for name, (command, args, env) in contenders.items():
            took, cpu, tools[name] = await start_to_tools(command, args, env)
            if i:  # the first round warms the disk and bytecode caches
                walls[name].append(took)
                cpus[name].append(cpu)
    bare_wall, bare_cpu = median(walls[bare_name]), median(cpus[bare_name])
    lines = [
        "| server | tools | median spawn → initialize → tools/list (min–max) | vs bare | its CPU time | vs bare |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in contenders:
        wall, cpu = median(walls[name]), median(cpus[name])
        lines.append(
            f"| {name} | {tools[name]} | {wall * 1e3:.0f} ms ({min(walls[name]) * 1e3:.0f}–"
            f"{max(walls[name]) * 1e3:.0f}) | **{wall / bare_wall:.2f}×** | {cpu * 1e3:.0f} ms | "
            f"{cpu / bare_cpu:.2f}× |"
        )
    lines.append(
        f"\n{runs} runs each, interleaved (target ≤ 1.05×). Load average at the start: {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} (1 / 5 / 15 min).\n"
    )

    phases = [python(PHASES) for _ in range(5)]
    bare_import = median([python(BARE_IMPORT)[0] for _ in range(5)])
    cli, imp, settings, build, bare_build, client = (median([p[i] for p in phases]) * 1e3 for i in range(6))
    lines += [
        "Where lexey-mcp's start-up goes, CPU time of the process (median of 5 processes):\n",
        "| phase | lexey-mcp | bare server |",
        "|---|---:|---:|",
        f"| the command line (`import lexey_mcp.cli`, light) | {cli:.0f} ms | — |",
        f"| imports (collector off) | {imp:.0f} ms | {bare_import * 1e3:.0f} ms (`mcp.server`, collector on) |",
        f"| `Settings()` | {settings:.1f} ms | — |",
        f"| `build_server()` / `MCPServer` + 1 tool | {build:.1f} ms | {bare_build:.1f} ms |",
        f"| lifespan: `LexeyClient(settings)` (its `httpx2.AsyncClient`) | {client:.1f} ms | — |\n",
    ]

    # What lexey-mcp imports that the bare server does not (median of 5 runs of each), by self time.
    statement = "import lexey_mcp.cli, lexey_mcp.stdio_transport; from lexey_mcp.server import build_server"
    ours = [import_times(statement) for _ in range(5)]
    base = import_times("from mcp.server import MCPServer")
    extra = {m: median([t.get(m, (0, 0))[0] for t in ours]) for m in ours[0] if m not in base}
    packages: dict[str, float] = {}
    for module, us in extra.items():
        packages[module.split(".")[0]] = packages.get(module.split(".")[0], 0) + us
    lines += [
        f"Imports only lexey-mcp makes: {sum(extra.values()) / 1e3:.0f} ms of self time in total, by package "
        "(and the heaviest modules):\n",
        "| package | self time | heaviest modules (self time) |",
        "|---|---:|---|",
    ]
    for package, us in sorted(packages.items(), key=lambda kv: -kv[1])[:8]:
        heavy = sorted(((m, t) for m, t in extra.items() if m.split(".")[0] == package), key=lambda kv: -kv[1])[:3]
        names = ", ".join(f"`{m}` {t / 1e3:.1f} ms" for m, t in heavy)
        lines.append(f"| `{package}` | {us / 1e3:.1f} ms | {names} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--before", metavar="PATH", help="also time lexey-mcp imported from PATH (a PYTHONPATH)")
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = parser.parse_args()
    text = header("## 4. Cold start") + "\n" + asyncio.run(run(args.runs, args.before)) + "\n"
    print(text)
    if args.write:
        write_section("cold_start", text)


if __name__ == "__main__":
    main()
