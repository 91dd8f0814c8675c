"""Capacity: many live token streams at once through one server, CPU per event and progress lag.

    .venv/bin/python -m benchmarks.capacity [--calls 200] [--rate 25] [--seconds 10] [--profile] [--write]

What a shared server spends on live streams. A paced upstream (its own process, plain asyncio) answers every
POST with a stream of short chat deltas, `--rate` events a second for `--seconds`; each delta carries the time
it was written. `--calls` `send_customer_message` calls run at once over streamable HTTP (with a progress
token) against:

* ours: `lexey-mcp --transport http`, sending progress: as shipped (`PROGRESS_INTERVAL` 0.5 s a stream, at most
  `PROGRESS_RATE` 100 calls a second in all), and with other settings (`--ours INTERVAL:RATE`);
* baseline: a hand-written `MCPServer` tool doing the same POST and an `httpx2.EventSource` + `json.loads`
  fold, sending no progress at all.

Measured per server, in the same run, interleaved: the server process's CPU seconds per 1,000 upstream events
(from /proc), the progress notifications it sent, and the lag from an upstream event to the first progress
notification carrying it (p50/p99, over every event). `--profile` samples our server with py-spy during one
more round and breaks its CPU down by where it goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

import lexey_mcp.pacing
from benchmarks._common import free_port, header, percentile, wait_for_port, write_section
from benchmarks.concurrency import cpu_seconds, process, raise_fd_limit
from lexey_mcp.sandbox import CUSTOMER_KEY

CID = "550e8400-e29b-41d4-a716-446655440000"
SESSIONS = 10
_STAMP = re.compile(r"<(\d+\.\d+)>")


# The paced upstream: HTTP/1.1 with keep-alive, every POST answered with a chunked event stream.


async def _serve_upstream(port: int, rate: float, seconds: float) -> None:
    count = round(rate * seconds)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                )
                start = time.monotonic()
                for i in range(1, count + 1):
                    # Paced from the start, so a late wake-up does not slow the stream down.
                    await asyncio.sleep(max(0.0, start + (i - 1) / rate - time.monotonic()))
                    event = b'id: %d\ndata: {"type":"delta","text":"<%.6f> word "}\n\n' % (i, time.time())
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                done = b"id: %d\ndata: [DONE]\n\n" % (count + 1)
                writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
                await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# The baseline: the same tool, written by hand, with no progress.

BASELINE = """
import json, os, sys
import httpx2
from mcp.server import MCPServer
from pydantic import BaseModel

upstream = sys.argv[2]
server = MCPServer("baseline")
http = httpx2.AsyncClient(
    trust_env=False, timeout=httpx2.Timeout(10, read=125), limits=httpx2.Limits(max_connections=None)
)


class Reply(BaseModel):
    text: str
    conversation_id: str
    outcome: str
    events_received: int


@server.tool()
async def send_customer_message(conversation_id: str, message: str) -> Reply:
    url = f"{upstream}/customer/conversations/{conversation_id}/messages"
    headers = {"Authorization": f"Bearer {os.environ['LEXEY_CUSTOMER_KEY']}", "Accept": "text/event-stream"}
    parts, events = [], 0
    async with http.stream("POST", url, json={"message": message}, headers=headers) as response:
        async for sse in httpx2.EventSource(response):
            if sse.data == "[DONE]":
                break
            obj = json.loads(sse.data)
            events += 1
            if obj.get("type") == "delta":
                parts.append(obj["text"])
    return Reply(text="".join(parts), conversation_id=conversation_id, outcome="complete", events_received=events)


server.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]), streamable_http_path="/mcp")
"""

OURS = """
import sys
import lexey_mcp.client, lexey_mcp.pacing
lexey_mcp.pacing.PROGRESS_INTERVAL = float(sys.argv.pop(1))
lexey_mcp.pacing.PROGRESS_RATE = float(sys.argv.pop(1))
if sys.argv.pop(1) == "close":  # close the upstream connection right after [DONE] (before issue 24)
    async def _no_drain(chunks): pass
    lexey_mcp.client._drain = _no_drain
from lexey_mcp.cli import main
sys.exit(main())
"""

#: Our server's settings in a round: progress interval, progress rate, and after [DONE] "keep" (read the body's end,
#: as shipped) or "close" the upstream connection.
Variant = tuple[float, float, str]
SHIPPED: Variant = (lexey_mcp.pacing.PROGRESS_INTERVAL, lexey_mcp.pacing.PROGRESS_RATE, "keep")


@contextlib.contextmanager
def server(kind: str, upstream: str, interval: float, rate: float, after_done: str) -> Iterator[tuple[int, int]]:
    """(port, pid) of a server of `kind` ("ours" or "baseline") pointed at `upstream`."""
    port = free_port()
    if kind == "baseline":
        args = [sys.executable, "-c", BASELINE, str(port), f"{upstream}/api/v1"]
    else:
        args = [sys.executable, "-c", OURS, str(interval), str(rate), after_done, "--transport", "http", "--port"]
        args.append(str(port))
    env = {
        "LEXEY_BASE_URL": f"{upstream}/api/v1",
        "LEXEY_CUSTOMER_KEY": CUSTOMER_KEY,
        "LEXEY_LOG_LEVEL": "WARNING",
        "LEXEY_MAX_RETRIES": "0",
    }
    with process(args, env) as proc:
        wait_for_port(port)
        yield port, proc.pid


@contextlib.contextmanager
def sampled(pid: int, output: Path) -> Iterator[None]:
    """py-spy samples process `pid` (attached, not pausing it) until the block ends."""
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    args = [py_spy, "record", "--pid", str(pid), "--nonblocking", "--rate", "250", "--format", "raw"]
    proc = subprocess.Popen([*args, "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)  # attached
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        proc.wait(30)


async def burst(url: str, calls: int, pid: int, expected: int) -> dict[str, Any]:
    """Run `calls` calls at once; the server's CPU, its progress notifications and their lag."""
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=None)
    lags: list[float] = []
    notifications = 0
    failures: Counter[str] = Counter()
    async with (
        httpx2.AsyncClient(limits=limits, timeout=httpx2.Timeout(30, read=300), trust_env=False) as http,
        contextlib.AsyncExitStack() as stack,
    ):
        clients = [
            await stack.enter_async_context(
                Client(streamable_http_client(url, http_client=http), read_timeout_seconds=300)
            )
            for _ in range(SESSIONS)
        ]

        async def one(i: int) -> None:
            nonlocal notifications
            newest = 0.0

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                nonlocal notifications, newest
                now = time.time()
                notifications += 1
                for stamp in map(float, _STAMP.findall(message or "")):
                    if stamp > newest:
                        lags.append(now - stamp)
                        newest = stamp

            args = {"conversation_id": CID, "message": "hi"}
            result = await clients[i % SESSIONS].call_tool("send_customer_message", args, progress_callback=on_progress)
            content = result.structured_content or {}
            got = content.get("events_received", content.get("events"))
            if result.is_error or content.get("outcome") != "complete" or got != expected:
                failures[str(content.get("outcome") or "tool error")] += 1

        before = cpu_seconds(pid)
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(calls)))
        wall = time.perf_counter() - start
        cpu = cpu_seconds(pid) - before
    return {"cpu": cpu, "wall": wall, "notifications": notifications, "lags": lags, "failures": dict(failures)}


def setting(kind: str, interval: float, rate: float, after_done: str) -> str:
    if kind != "ours":
        return "none"
    shipped = (interval, rate, after_done) == SHIPPED
    cap = "no cap" if rate == float("inf") else f"≤ {rate:g}/s in all"
    closing = ", closing the upstream connection after [DONE]" if after_done == "close" else ""
    return f"{interval:g} s a stream, {cap}{closing}" + (" (shipped)" if shipped else "")


def breakdown(profile: Path) -> list[tuple[str, float]]:
    """Share of the server's samples by where they were: the deepest of our markers on the stack decides."""
    markers = [
        ("lexey_mcp/client.py", "_open (", "HTTP request (httpx2 send, headers)"),
        ("lexey_mcp/stream_reading.py", "read_stream (", "HTTP read (httpx2 response body)"),
        ("lexey_mcp/sse.py", "", "parse (lexey_mcp.sse)"),
        ("lexey_mcp/streaming.py", "", "fold (lexey_mcp.streaming)"),
        (
            "lexey_mcp/server/progress.py",
            "__call__ (",
            "progress (our callback, the SDK's notification and its framing)",
        ),
    ]
    totals: Counter[str] = Counter()
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        where = ""
        for frame in frames:  # from the root down: the deepest marker wins
            for path, function, label in markers:
                if path in frame and function in frame:
                    where = label
        if not where:
            tool = any("lexey_mcp/server/" in f for f in frames)
            mcp = any(("/mcp/" in f or "starlette" in f or "uvicorn" in f or "pydantic" in f) for f in frames)
            where = (
                "tool body (lexey_mcp.server, result model)"
                if tool
                else "MCP framing and HTTP serving (mcp, starlette, uvicorn, pydantic)"
                if mcp
                else "event loop and other (asyncio, GC)"
            )
        totals[where] += int(count)
    total = sum(totals.values()) or 1
    return [(label, n / total) for label, n in totals.most_common()]


async def run(calls: int, rate: float, seconds: float, variants: list[Variant], rounds: int, profile: bool) -> str:
    raise_fd_limit()
    expected = round(rate * seconds)
    events = calls * expected
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    up_args = [sys.executable, "-m", "benchmarks.capacity", "--upstream", str(up_port), str(rate), str(seconds)]
    rows = [
        "| server | progress | CPU s per round | median CPU ms / 1,000 events | median vs baseline "
        "| notifications | lag p50 / p99 | wall | failed |",
        "|---|---:|---|---:|---:|---:|---|---:|---:|",
    ]
    load = os.getloadavg()
    results: dict[tuple[str, float, float, str], list[dict[str, Any]]] = {}
    baseline = ("baseline", 0.0, 0.0, "")
    contenders = [baseline] + [("ours", *variant) for variant in variants]
    with process(up_args):
        wait_for_port(up_port)
        for _ in range(rounds):  # interleaved
            for contender in contenders:
                kind, interval, cap, after_done = contender
                with server(kind, upstream, interval, cap, after_done) as (port, pid):
                    r = await burst(f"http://127.0.0.1:{port}/mcp", calls, pid, expected)
                results.setdefault(contender, []).append(r)
                print(*contender, {k: v for k, v in r.items() if k != "lags"}, flush=True)
        shares: list[tuple[str, float]] = []
        if profile:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "profile.txt"
                with server("ours", upstream, *variants[0]) as (port, pid), sampled(pid, path):
                    await burst(f"http://127.0.0.1:{port}/mcp", calls, pid, expected)
                shares = breakdown(path)
    base_cpu = statistics.median(r["cpu"] for r in results[baseline])
    for contender in contenders:
        runs = results[contender]
        cpu = statistics.median(r["cpu"] for r in runs)
        lags = sorted(lag for r in runs for lag in r["lags"])
        lag = f"{percentile(lags, 50) * 1e3:.0f} / {percentile(lags, 99) * 1e3:.0f} ms" if lags else "—"
        failed = sum(sum(r["failures"].values()) for r in runs)
        notifications = statistics.median(r["notifications"] for r in runs)
        wall = statistics.median(r["wall"] for r in runs)
        per_round = " / ".join(f"{r['cpu']:.2f}" for r in runs)
        rows.append(
            f"| {contender[0]} | {setting(*contender)} | {per_round} | "
            f"{cpu / events * 1e6:.0f} | {cpu / base_cpu:.2f}× | {notifications:,.0f} | {lag} | {wall:.1f} s | "
            f"{failed} |"
        )
    text = "\n".join(rows)
    text += (
        f"\n\n{calls} calls at once, {SESSIONS} MCP sessions, each upstream stream {expected} deltas at {rate:g}/s "
        f"({events:,} events per round); {rounds} interleaved rounds: CPU per round, medians, lag over every "
        "event of every round. Load average at the start: "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min; other agents share the 2 cores).\n"
    )
    if shares:
        text += (
            f"\nWhere our server's CPU goes (py-spy, 250 samples/s, {setting('ours', *variants[0])}):\n\n"
            "| where | share |\n|---|---:|\n"
        )
        text += "".join(f"| {label} | {share * 100:.0f} % |\n" for label, share in shares)
    return text


def progress_setting(text: str) -> Variant:
    """INTERVAL:RATE[:close], e.g. 0.5:100, 0.5:inf or 0.5:100:close."""
    interval, colon, rest = text.partition(":")
    rate, _, after_done = rest.partition(":")
    try:
        if not colon or after_done not in ("", "keep", "close"):
            raise ValueError
        return float(interval), float(rate), after_done or "keep"
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not INTERVAL:RATE[:close] (0.5:100; 0.5:inf for no cap; 0.5:100:close)"
        ) from None


def main() -> None:
    if sys.argv[1:2] == ["--upstream"]:
        port, rate, seconds = sys.argv[2:5]
        asyncio.run(_serve_upstream(int(port), float(rate), float(seconds)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--ours",
        nargs="+",
        type=progress_setting,
        default=[SHIPPED, (0.5, float("inf"), "keep")],
        metavar="INTERVAL:RATE[:close]",
        help="settings of our server, one round each (the first is profiled): seconds between two progress calls of "
        "a stream, calls a second across all streams (inf: no cap), and :close to close the upstream connection "
        "right after [DONE] instead of reading the body's end",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also sample our server with py-spy")
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = parser.parse_args()
    result = asyncio.run(run(args.calls, args.rate, args.seconds, args.ours, args.rounds, args.profile))
    text = header("## 7. Capacity: live streams, CPU per event, progress lag") + "\n" + result
    print(text)
    if args.write:
        write_section("capacity", text)


if __name__ == "__main__":
    main()
