"""Concurrency: N streaming tool calls at once against one `lexey-mcp --transport http` process.

    .venv/bin/python -m benchmarks.concurrency [--n 100 500 1000] [--sessions 10] [--write]

The sandbox runs in its own process with `--delay 0.01` (10 ms between streamed events); a fresh server
process serves each N. The calls are `send_customer_message` without a conversation id (each creates its
conversation, then streams the agent's reply: two upstream requests per call), spread over a few MCP
sessions that share one unpooled httpx2 client (so the benchmark's own connection pool is not what limits).
Reported: successes (a result with outcome "complete"), calls/s over the whole burst, p50/p99 latency, and
the server process's peak RSS (VmHWM) and open file descriptors at the peak.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from benchmarks._common import free_port, header, percentile, wait_for_port, write_section
from lexey_mcp.sandbox import client_env


def raise_fd_limit() -> tuple[int, int]:
    """Soft file-descriptor limit up to the hard one (inherited by the processes we start)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    # Not a pipe for stderr: nobody would read it, and a process blocks once a pipe's buffer is full.
    proc = subprocess.Popen(
        args, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        if proc.poll() is None:
            proc.kill()


def status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


async def burst(url: str, n: int, sessions: int, server_pid: int, sandbox_pid: int) -> dict[str, Any]:
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx2.Timeout(30, read=300)
    latencies: list[float] = []
    failures: dict[str, int] = {}
    peak_fds = 0

    async with httpx2.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as http:
        clients = [
            Client(streamable_http_client(url, http_client=http), read_timeout_seconds=300) for _ in range(sessions)
        ]
        async with contextlib.AsyncExitStack() as stack:
            for client in clients:
                await stack.enter_async_context(client)

            async def one(i: int) -> None:
                start = time.perf_counter()
                try:
                    result = await clients[i % sessions].call_tool(
                        "send_customer_message", {"message": "What are your business hours?"}
                    )
                except Exception as exc:  # every failure is counted, by kind
                    key = f"{type(exc).__name__}: {str(exc)[:80]}"
                    failures[key] = failures.get(key, 0) + 1
                    return
                content = result.structured_content or {}
                if result.is_error or content.get("outcome") != "complete":
                    text = result.content[0].text if result.content else "?"  # type: ignore[union-attr]
                    key = f"{content.get('outcome', 'tool error')}: {content.get('partial_reason') or text[:80]}"
                    failures[key] = failures.get(key, 0) + 1
                    return
                latencies.append(time.perf_counter() - start)

            async def watch() -> None:
                nonlocal peak_fds
                while True:
                    peak_fds = max(peak_fds, open_fds(server_pid))
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch())
            before = cpu_seconds(server_pid), cpu_seconds(sandbox_pid), time.process_time()
            start = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            wall = time.perf_counter() - start
            after = cpu_seconds(server_pid), cpu_seconds(sandbox_pid), time.process_time()
            used = [a - b for a, b in zip(after, before, strict=True)]
            cpu = dict(zip(("server", "sandbox", "client"), used, strict=True))
            watcher.cancel()
    return {
        "ok": len(latencies),
        "wall": wall,
        "p50": percentile(latencies, 50) if latencies else 0.0,
        "p99": percentile(latencies, 99) if latencies else 0.0,
        "rss": status(server_pid, "VmHWM"),
        "fds": peak_fds,
        "failures": failures,
        "cpu": cpu,
    }


async def run(ns: list[int], sessions: int) -> str:
    soft, _ = raise_fd_limit()
    sandbox_port = free_port()
    rows = [
        "| N | ok | failed | calls/s | p50 | p99 | server peak RSS | server fds at peak "
        "| CPU s: server / sandbox / client (wall) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    notes = []
    with process([sys.executable, "-m", "lexey_mcp.sandbox", "--port", str(sandbox_port), "--delay", "0.01"]) as sb:
        wait_for_port(sandbox_port)
        env = {**client_env(f"http://127.0.0.1:{sandbox_port}"), "LEXEY_LOG_LEVEL": "WARNING"}
        exe = str(Path(sys.executable).with_name("lexey-mcp"))
        for n in ns:
            port = free_port()
            with process([exe, "--transport", "http", "--port", str(port)], env) as server:
                wait_for_port(port)
                idle_rss = status(server.pid, "VmRSS")
                r = await burst(f"http://127.0.0.1:{port}/mcp", n, sessions, server.pid, sb.pid)
            failed = n - int(r["ok"])
            rows.append(
                f"| {n:,} | {int(r['ok']):,} | {failed} | {n / r['wall']:.0f} | {r['p50'] * 1e3:.0f} ms | "
                f"{r['p99'] * 1e3:.0f} ms | {r['rss'] / 1024:.0f} MiB (idle {idle_rss / 1024:.0f}) | "
                f"{r['fds']:,} | {r['cpu']['server']:.1f} / {r['cpu']['sandbox']:.1f} / "
                f"{r['cpu']['client']:.1f} ({r['wall']:.1f}) |"
            )
            if failed:
                notes.append(f"N={n} failures: {r['failures']}")
            print(rows[-1], flush=True)
    text = "\n".join(rows)
    limit = os.environ.get("LEXEY_MCP_MAX_CONCURRENCY", "1,000 (its default)")
    text += (
        f"\n\nSandbox: `python -m lexey_mcp.sandbox --delay 0.01` in its own process; {sessions} MCP sessions; "
        f"file-descriptor soft limit {soft:,} (raised to the hard limit). The server runs with "
        f"`LEXEY_MCP_MAX_CONCURRENCY` at {limit} (connections and requests at once; beyond it uvicorn answers "
        "HTTP 503, which `mcp.Client` reports as `MCPError: Server returned an error response`).\n"
    )
    return text + "".join(f"\n{n}" for n in notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = parser.parse_args()
    text = header("## 3. Concurrency") + "\n" + asyncio.run(run(args.n, args.sessions)) + "\n"
    print(text)
    if args.write:
        write_section("concurrency", text)


if __name__ == "__main__":
    main()
