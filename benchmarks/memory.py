"""Memory: peak while folding a 50 MB stream, and the cost of each idle in-flight stream.

    .venv/bin/python -m benchmarks.memory [--mb 50] [--idle 500] [--write]

Folding: `read_stream` + `ChatFold` over 50 MB of chat events made on the fly in 64 KiB chunks (the input is
never held whole), each case in a fresh process. Reported: tracemalloc's peak of Python allocations during
the fold and `result()`, the growth of the peak RSS (VmHWM), both against the reply's size (its characters
are ASCII, so one byte each). Idle streams: N `LexeyClient.customer.send_message` calls against a sandbox in
another process that sends three events and then stalls; once every stream has its first text, the growth
of traced memory and of RSS over the N streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator

import anyio

from benchmarks._common import (
    chat_body,
    delta_texts,
    header,
    peak_rss_kib,
    rss_kib,
    sandbox_process,
    write_section,
)
from lexey_mcp.sandbox import client_env

CHUNK = 64 * 1024


async def events(total: int, size: int) -> AsyncIterator[bytes]:
    """`total` bytes of chat events with deltas of `size` characters, in CHUNK pieces, then [DONE]."""
    texts = delta_texts(997, size, plain=True)
    sent, next_id, buffer = 0, 1, bytearray()
    while sent < total:
        while len(buffer) < CHUNK:
            buffer += chat_body([texts[next_id % len(texts)]], start_id=next_id, done=False)
            next_id += 1
        piece = bytes(buffer[:CHUNK])
        del buffer[:CHUNK]
        sent += len(piece)
        yield piece
    yield bytes(buffer) + b"id: %d\ndata: [DONE]\n\n" % next_id


async def fold_case(total: int, size: int, progress: bool) -> dict[str, float]:
    from lexey_mcp.stream_reading import read_stream
    from lexey_mcp.streaming import ChatFold

    calls = 0

    async def on_text(text: str) -> None:
        nonlocal calls
        calls += 1

    rss_before = rss_kib()
    tracemalloc.start()
    fold = ChatFold(conversation_id=None, request_id=None, max_reply_chars=10**9, secrets=[])
    start = time.perf_counter()
    reason = await read_stream(
        events(total, size), fold, max_event_bytes=1 << 20, on_text=on_text if progress else None
    )
    result = fold.result(reason)
    took = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.outcome == "complete", result.outcome
    return {
        "text": len(result.text),
        "peak": peak,
        "rss": (peak_rss_kib() - rss_before) * 1024,
        "took": took,
        "events": result.events_received,
        "progress": calls,
    }


async def idle_case(n: int) -> dict[str, float]:
    from lexey_mcp.client import LexeyClient
    from lexey_mcp.config import Settings

    first = [
        piece + "\n\n"
        for piece in chat_body(delta_texts(3, 20, plain=True), done=False).decode().split("\n\n")
        if piece
    ]
    fault = {"target": "customer", "times": n, "raw_chunks": first, "stall_after": 3, "stall_seconds": 120}
    with sandbox_process(0.0) as root:
        env = client_env(root)
        import httpx2

        async with httpx2.AsyncClient(trust_env=False) as http:
            (
                await http.post(
                    f"{root}/_sandbox/faults", content=json.dumps(fault), headers={"content-type": "application/json"}
                )
            ).raise_for_status()
        settings = Settings(_env_file=None, base_url=env["LEXEY_BASE_URL"], customer_key=env["LEXEY_CUSTOMER_KEY"])
        async with LexeyClient(settings, trust_env=False) as client:
            started = anyio.Event()
            open_streams = 0

            async def on_text(text: str) -> None:
                nonlocal open_streams
                open_streams += 1
                if open_streams == n:
                    started.set()

            tracemalloc.start()
            base_traced, base_rss = tracemalloc.get_traced_memory()[0], rss_kib()
            async with anyio.create_task_group() as group:
                for _ in range(n):
                    group.start_soon(lambda: client.customer.send_message(str(uuid.uuid4()), "hi", on_text=on_text))
                with anyio.fail_after(60):
                    await started.wait()
                await anyio.sleep(0.5)  # let every stream settle into its wait
                traced, rss = tracemalloc.get_traced_memory()[0] - base_traced, (rss_kib() - base_rss) * 1024
                group.cancel_scope.cancel()
            tracemalloc.stop()
    return {"n": n, "traced": traced / n, "rss": rss / n}


def in_fresh_process(arguments: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "--case", *arguments], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def run(mb: int, idle: int) -> str:
    total = mb * 1_000_000
    lines = [
        "| fold of a 50 MB stream | events | reply text | traced peak | ÷ text | peak RSS growth | ÷ text | "
        "progress calls | time (under tracemalloc) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, progress in ((10, False), (200, False), (200, True)):
        r = in_fresh_process(["fold", str(total), str(size), str(int(progress))])
        mib = 1024 * 1024
        lines.append(
            f"| {size} B deltas{' + on_text progress' if progress else ''} | {r['events']:,.0f} | "
            f"{r['text'] / mib:.1f} MiB | {r['peak'] / mib:.1f} MiB | **{r['peak'] / r['text']:.2f}×** | "
            f"{r['rss'] / mib:.1f} MiB | {r['rss'] / r['text']:.2f}× | {r['progress']:.0f} | "
            f"{r['took']:.2f} s |"
        )
    lines.append(
        f"\nTarget: peak ≤ 2.5× the text. The stream is {mb} MB of wire bytes in {CHUNK // 1024} KiB chunks, "
        "made on the fly (the time includes making them, and tracemalloc's own overhead).\n"
    )
    r = in_fresh_process(["idle", str(idle)])
    lines += [
        "| idle in-flight streams | traced memory per stream | RSS per stream |",
        "|---|---:|---:|",
        f"| {idle} `send_message` calls, stalled after 3 events | {r['traced'] / 1024:.1f} KiB | "
        f"{r['rss'] / 1024:.1f} KiB |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)  # one measurement, in this (fresh) process
    args = parser.parse_args()
    if args.case:
        if args.case[0] == "fold":
            total, size, progress = (int(x) for x in args.case[1:])
            print(json.dumps(asyncio.run(fold_case(total, size, bool(progress)))))
        else:
            print(json.dumps(asyncio.run(idle_case(int(args.case[1])))))
        return
    text = header("## 5. Memory") + "\n" + run(args.mb, args.idle) + "\n"
    print(text)
    if args.write:
        write_section("memory", text)


if __name__ == "__main__":
    main()
