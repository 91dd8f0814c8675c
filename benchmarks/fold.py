"""Fold throughput: `read_stream` + `ChatFold` (and all of `send_message`) vs `httpx2.EventSource` + `json.loads`.

    .venv/bin/python -m benchmarks.fold [--quick] [--write]

Every contender reads the same bytes from an `httpx2.Response`: in memory (`httpx2.MockTransport`) and over
loopback from a sandbox running in its own process (served verbatim through a `raw_chunks` fault). The body
arrives in 64 KiB pieces (a socket read's worth) or one event per piece (a token stream written as it is made).
Reported: events/s and MB/s of wall time, CPU µs per event of this process, and baseline / ours in the same run
(medians of interleaved repeats). "transport only" reads the body through httpx2 and parses nothing: the floor
under every contender, and most of the cost when each event arrives in its own chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx2

from benchmarks._common import (
    chat_body,
    delta_texts,
    header,
    median,
    sandbox_process,
    split,
    write_section,
)
from lexey_mcp.client import LexeyClient
from lexey_mcp.config import Settings
from lexey_mcp.sandbox import CUSTOMER_KEY, client_env
from lexey_mcp.stream_reading import read_stream
from lexey_mcp.streaming import ChatFold

CID = str(uuid.UUID(int=1))
MAX_EVENT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Case:
    name: str
    events: int
    size: int
    plain: bool
    eol: str = "\n"
    escaped: bool = False

    def texts(self) -> list[str]:
        return delta_texts(self.events, self.size, plain=self.plain)

    def body(self) -> bytes:
        return chat_body(self.texts(), eol=self.eol, escaped=self.escaped)


CASES = [
    Case("10 B deltas", 100_000, 10, plain=True),
    Case("10 B deltas, CRLF", 100_000, 10, plain=True, eol="\r\n"),
    Case("200 B deltas, escapes + UTF-8", 20_000, 200, plain=False),
    Case("200 B deltas, CRLF", 20_000, 200, plain=False, eol="\r\n"),
    Case("200 B deltas, \\u-escaped non-ASCII", 20_000, 200, plain=False, escaped=True),
    Case("2 KB deltas", 4_000, 2000, plain=False),
]

Folder = Callable[[httpx2.Response], Awaitable[tuple[str, int]]]


async def baseline(response: httpx2.Response) -> tuple[str, int]:
    """The straightforward loop the issue describes."""
    parts: list[str] = []
    count = 0
    async for sse in httpx2.EventSource(response):
        if sse.data == "[DONE]":
            break
        obj = json.loads(sse.data)
        count += 1
        if obj.get("type") == "delta":
            parts.append(obj["text"])
    return "".join(parts), count


async def transport_only(response: httpx2.Response) -> tuple[str, int]:
    """The floor: reading the body through httpx2 and nothing else."""
    async for _ in response.aiter_bytes():
        pass
    return "", 0


async def ours(response: httpx2.Response) -> tuple[str, int]:
    fold = ChatFold(conversation_id=CID, request_id=None, max_reply_chars=10**9, secrets=[])
    result = fold.result(await read_stream(response.aiter_bytes(), fold, max_event_bytes=MAX_EVENT_BYTES))
    assert result.outcome == "complete", result.outcome
    return result.text, result.events_received


def settings(base_url: str) -> Settings:
    return Settings(
        _env_file=None,
        base_url=base_url,
        customer_key=CUSTOMER_KEY,
        max_reply_chars=10**9,
        max_event_bytes=MAX_EVENT_BYTES,
    )


async def timed(run: Callable[[], Awaitable[tuple[str, int]]]) -> tuple[float, float, tuple[str, int]]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = await run()
    return time.perf_counter() - wall, time.process_time() - cpu, out


async def in_memory(case: Case, chunking: str, repeats: int) -> dict[str, tuple[float, float]]:
    texts = case.texts()
    body = case.body()
    chunks = split(body, 64 * 1024) if chunking == "64 KiB" else _per_event(body, case.eol)

    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    def respond(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=stream())

    transport = httpx2.MockTransport(respond)
    url = f"https://lexey.test/api/v1/customer/conversations/{CID}/messages"
    async with (
        httpx2.AsyncClient(transport=transport) as http,
        LexeyClient(settings("https://lexey.test/api/v1"), transport=transport) as client,
    ):

        def over_response(folder: Folder) -> Callable[[], Awaitable[tuple[str, int]]]:
            async def run() -> tuple[str, int]:
                async with http.stream("POST", url, json={"message": "hi"}) as response:
                    return await folder(response)

            return run

        async def send() -> tuple[str, int]:
            result = await client.customer.send_message(CID, "hi")
            return result.text, result.events_received

        runs = {
            "baseline": over_response(baseline),
            "ours": over_response(ours),
            "send_message": send,
            "transport only": over_response(transport_only),
        }
        return await _measure(runs, "".join(texts), len(texts), repeats)


def _per_event(body: bytes, eol: str) -> list[bytes]:
    sep = (eol * 2).encode()
    return [piece + sep for piece in body.split(sep) if piece]


async def loopback(case: Case, chunking: str, repeats: int, root: str) -> dict[str, tuple[float, float]]:
    texts = case.texts()
    body = case.body()
    chunks = split(body, 64 * 1024) if chunking == "64 KiB" else _per_event(body, case.eol)
    fault = {"target": "customer", "times": 1, "raw_chunks": [c.decode("latin-1") for c in chunks]}
    url = f"{root}/api/v1/customer/conversations/{CID}/messages"
    headers = {"Authorization": f"Bearer {CUSTOMER_KEY}"}
    async with (
        httpx2.AsyncClient(trust_env=False, timeout=60) as http,
        LexeyClient(settings(client_env(root)["LEXEY_BASE_URL"]), trust_env=False) as client,
    ):
        fault_body = json.dumps(fault).encode()

        async def inject() -> None:
            answer = await http.post(
                f"{root}/_sandbox/faults", content=fault_body, headers={"content-type": "application/json"}
            )
            answer.raise_for_status()

        def over_response(folder: Folder) -> Callable[[], Awaitable[tuple[str, int]]]:
            async def run() -> tuple[str, int]:
                async with http.stream("POST", url, json={"message": "hi"}, headers=headers) as response:
                    return await folder(response)

            return run

        async def send() -> tuple[str, int]:
            result = await client.customer.send_message(CID, "hi")
            return result.text, result.events_received

        runs = {
            "baseline": over_response(baseline),
            "ours": over_response(ours),
            "send_message": send,
            "transport only": over_response(transport_only),
        }
        return await _measure(runs, "".join(texts), len(texts), repeats, before=inject)


async def _measure(
    runs: dict[str, Callable[[], Awaitable[tuple[str, int]]]],
    text: str,
    count: int,
    repeats: int,
    before: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, tuple[float, float]]:
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved, so drift hits every contender alike
        for name, run in runs.items():
            if before is not None:
                await before()
            wall, cpu, out = await timed(run)
            if out != (text, count) and name != "transport only":
                raise AssertionError(f"{name} folded a different result")
            samples[name].append((wall, cpu))
    return {name: (median([w for w, _ in s]), median([c for _, c in s])) for name, s in samples.items()}


def table(rows: list[tuple[str, str, str, Case, dict[str, tuple[float, float]]]]) -> str:
    out = [
        "| path | case | chunks | contender | events/s | MB/s | CPU µs/event | baseline ÷ ours (wall) | (CPU) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for path, name, chunking, case, result in rows:
        size = len(case.body())
        base_wall, base_cpu = result["baseline"]
        for contender, (wall, cpu) in result.items():
            ratio = "" if contender == "baseline" else f"**{base_wall / wall:.1f}×**"
            cpu_ratio = "" if contender == "baseline" else f"{base_cpu / cpu:.1f}×"
            if contender == "transport only":  # a floor, not a contender
                ratio = cpu_ratio = "(floor)"
            out.append(
                f"| {path} | {name} | {chunking} | {contender} | {case.events / wall:,.0f} | "
                f"{size / wall / 1e6:.1f} | {cpu / case.events * 1e6:.2f} | {ratio} | {cpu_ratio} |"
            )
    return "\n".join(out)


async def main_async(quick: bool) -> str:
    repeats = 3 if quick else 7
    cases = [Case(c.name, c.events // 10, c.size, c.plain, c.eol, c.escaped) for c in CASES] if quick else CASES
    rows = []
    for case in cases:
        for chunking in ("64 KiB", "1 event"):
            rows.append(("in-memory", case.name, chunking, case, await in_memory(case, chunking, repeats)))
            print(table(rows[-1:]), flush=True)
    with sandbox_process() as root:
        for case in cases:
            for chunking in ("64 KiB", "1 event"):
                rows.append(("loopback", case.name, chunking, case, await loopback(case, chunking, repeats, root)))
                print(table(rows[-1:]), flush=True)
    return table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the events, 3 repeats")
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = parser.parse_args()
    result = asyncio.run(main_async(args.quick))
    text = header("## 1. Fold throughput") + "\n" + result + "\n"
    print(text)
    if args.write:
        write_section("fold", text)


if __name__ == "__main__":
    main()
