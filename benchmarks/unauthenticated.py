"""What a client without credentials costs a listener (issue 21's three breaks), measured against one or more
source trees in the same run, so a fix is shown against its baseline on the same machine and load:

    .venv/bin/python -m benchmarks.unauthenticated --source before=/path/to/main --source after=. [--write]

Bodies: 300 tokenless POSTs to `/mcp` naming a session and announcing 4 MiB, each sending 1 MiB and then holding
its connection; the server's RSS and how many were answered after 10 s; then 200 deep-nested JSON bodies with the
token: their statuses and the log lines they cost.
Idle flood: 600 connections that never finish a request (re-opened as the server closes them) against a cap of 200
(LEXEY_MCP_MAX_CONCURRENCY) for 20 s; a prompt client's `initialize` every second: how many were served, and in how
long.
Webhook listener: `lexey-mcp --webhook-port` (stdio) at a 256-descriptor limit, 400 connections that never finish
their headers for 10 s; how long a signed webhook and a tool call then take, and stderr's lines and bytes.
Loopback only; every flood bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, MCPError, StdioServerParameters

from benchmarks._common import free_port, header, rss_kib, wait_for_port, write_section
from lexey_mcp.events.receiver import sign
from lexey_mcp.paths import WEBHOOK_PATH

TOKEN = "benchmark-token-0123456789abcdef"
SECRET = "benchmark-secret-0123456789"
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}},
}


def _env(source: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXEY_", "LEXI_"))}
    return {**env, "PYTHONPATH": str(source.resolve()), "LEXEY_LOG_LEVEL": "INFO", **extra}


@contextlib.asynccontextmanager
async def _http_server(source: Path, log: Path, **env: str) -> AsyncIterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    command = [sys.executable, "-m", "lexey_mcp", "--transport", "http", "--port", str(port), "--sandbox"]
    with log.open("wb") as err:
        process = subprocess.Popen(  # noqa: ASYNC220 - returns once forked; the waits below are async
            command, env=_env(source, **env), stderr=err, stdout=subprocess.DEVNULL, cwd=source
        )
    try:
        await asyncio.to_thread(wait_for_port, port, 30.0)
        yield port, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _status_line(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    try:
        return await asyncio.wait_for(reader.readline(), seconds) or None
    except (TimeoutError, ConnectionError):
        return None


async def bodies(source: Path, work: Path) -> dict[str, Any]:
    log = work / "bodies.log"
    async with _http_server(source, log, LEXEY_MCP_AUTH_TOKEN=TOKEN) as (port, process):
        await asyncio.sleep(1)
        rss_before = rss_kib(process.pid) // 1024
        head = (
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Accept: application/json, text/event-stream\r\nMcp-Session-Id: guessed\r\n"
            b"Content-Length: %d\r\n\r\n" % (4 * 1024 * 1024)
        )
        chunk = b"[" * (1024 * 1024)
        writers: list[asyncio.StreamWriter] = []

        async def attack() -> bool:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writers.append(writer)
            with contextlib.suppress(ConnectionError):
                writer.write(head + chunk)
                await asyncio.wait_for(writer.drain(), 10)
            return await _status_line(reader, 10) is not None

        started = time.monotonic()
        answered = await asyncio.gather(*(attack() for _ in range(300)), return_exceptions=True)
        rss_attack = rss_kib(process.pid) // 1024
        elapsed = time.monotonic() - started
        for writer in writers:
            writer.close()
        lines_before = len(log.read_bytes().splitlines())
        statuses: dict[int, int] = {}
        async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
            headers = {**MCP_HEADERS, "Mcp-Session-Id": "guessed", "Authorization": f"Bearer {TOKEN}"}
            for _ in range(200):
                response = await http.post(f"http://127.0.0.1:{port}/mcp", content=b"[" * 100_000, headers=headers)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        await asyncio.sleep(0.5)
        lines_after = len(log.read_bytes().splitlines())
    return {
        "rss_idle_mib": rss_before,
        "rss_under_attack_mib": rss_attack,
        "answered_of_300": sum(a is True for a in answered),
        "attack_seconds": round(elapsed, 1),
        "deep_json_statuses": statuses,
        "deep_json_log_lines": lines_after - lines_before,
    }


def _flood(port: int, connections: int, seconds: float, request_line: bytes) -> None:
    """In a process of its own (an attacker is not the client's process): `connections` connections to `port`, each
    re-opened as soon as the server closes it, every other one sending `request_line` and never the rest of its
    headers, for `seconds`."""

    async def hold(index: int, until: float) -> None:
        while time.monotonic() < until:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            if index % 2:
                writer.write(request_line)
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(reader.read(), max(until - time.monotonic(), 0.01))
            writer.close()

    async def main() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(hold(i, until) for i in range(connections)))

    asyncio.run(main())


@contextlib.contextmanager
def _flooding(port: int, connections: int, seconds: float, request_line: bytes) -> Iterator[None]:
    process = multiprocessing.get_context("spawn").Process(
        target=_flood, args=(port, connections, seconds, request_line)
    )
    process.start()
    try:
        yield
    finally:
        process.join(seconds + 30)
        if process.is_alive():
            process.kill()
            process.join()


async def idle_flood(source: Path, work: Path) -> dict[str, Any]:
    log = work / "idle.log"
    env = {"LEXEY_MCP_MAX_CONCURRENCY": "200", "LEXEY_MCP_HEADER_TIMEOUT": "2"}
    async with _http_server(source, log, **env) as (port, _):
        with _flooding(port, 600, 25, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"):
            await asyncio.sleep(3)
            served, times = 0, []
            failures: dict[str, int] = {}
            fresh = httpx2.Limits(max_keepalive_connections=0)  # each probe a new client's connection
            async with httpx2.AsyncClient(trust_env=False, timeout=10, limits=fresh) as http:
                for _ in range(20):
                    started = time.monotonic()
                    try:
                        response = await http.post(f"http://127.0.0.1:{port}/mcp", json=INITIALIZE, headers=MCP_HEADERS)
                    except httpx2.HTTPError as exc:
                        outcome = type(exc).__name__
                    else:
                        outcome = str(response.status_code)
                    if outcome == "200":
                        served += 1
                        times.append(time.monotonic() - started)
                    else:
                        failures[outcome] = failures.get(outcome, 0) + 1
                    await asyncio.sleep(1)
    return {
        "probes_served_of_20": served,
        "probes_failed": failures,
        "median_answer_ms": round(statistics.median(times) * 1000) if times else None,
    }


async def webhook_listener(source: Path, work: Path) -> dict[str, Any]:
    log = work / "webhook.log"
    port = free_port()
    env = _env(source, LEXEY_WEBHOOK_SECRET=SECRET, LEXEY_STATE_DIR=str(work), LOG=str(log))
    shell = 'ulimit -n 256 && exec "$@" 2>"$LOG"'
    args = ["-c", shell, "sh", sys.executable, "-m", "lexey_mcp", "--webhook-port", str(port)]
    body = json.dumps(
        {
            "event": "conversation.escalated",
            "timestamp": "2026-11-30T09:00:00Z",
            "conversation": {"id": "00000000-0000-4000-8000-000000000001", "status": "escalated"},
            "payload": {"reason": "benchmark"},
        }
    ).encode()
    async with Client(StdioServerParameters(command="/bin/sh", args=args, env=env, cwd=source)) as client:
        await client.list_tools()
        with _flooding(port, 400, 12, b"POST /webhooks/lexey HTTP/1.1\r\nHost: 127.0.0.1\r\n"):
            await asyncio.sleep(5)
            started = time.monotonic()
            status = None
            async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
                with contextlib.suppress(httpx2.HTTPError):
                    headers = {"X-Lexey-Signature": sign(SECRET, body), "Content-Type": "application/json"}
                    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
                    status = (await http.post(url, content=body, headers=headers)).status_code
            webhook_seconds = time.monotonic() - started
            started = time.monotonic()
            try:
                listed = await client.call_tool("list_escalations", {})
                tool_outcome = "tool error" if listed.is_error else "ok"
            except MCPError as exc:  # the server failed the request (before issue 21: no descriptor for its store)
                tool_outcome = exc.error.message
            tool_seconds = time.monotonic() - started
    text = log.read_bytes()
    return {
        "webhook_status": status,
        "webhook_seconds": round(webhook_seconds, 2),
        "tool_call": tool_outcome,
        "tool_call_seconds": round(tool_seconds, 2),
        "stderr_lines": len(text.splitlines()),
        "stderr_kib": len(text) // 1024,
    }


async def run(sources: dict[str, Path]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name, source in sources.items():
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            results[name] = {
                "bodies": await bodies(source, work),
                "idle flood": await idle_flood(source, work),
                "webhook listener": await webhook_listener(source, work),
            }
            print(name, json.dumps(results[name]), file=sys.stderr)
    return results


def _table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    rows = ["| attack | measure | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    first = results[names[0]]
    for attack, measures in first.items():
        for measure in measures:
            cells = [str(results[n][attack][measure]) for n in names]
            rows.append(f"| {attack} | {measure} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", action="append", required=True, help="NAME=PATH of a lexey-mcp source tree")
    parser.add_argument("--write", action="store_true", help="write the result into BENCHMARKS.md")
    args = parser.parse_args()
    sources = {item.split("=", 1)[0]: Path(item.split("=", 1)[1]) for item in args.source}
    load = os.getloadavg()[0]
    results = asyncio.run(run(sources))
    table = _table(results)
    markdown = f"{header('## 11. Unauthenticated cost (issue 21)')}\nLoad average at start: {load:.2f}.\n\n{table}\n"
    print(markdown)
    if args.write:
        write_section("unauthenticated", markdown)


if __name__ == "__main__":
    main()
