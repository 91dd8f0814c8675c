"""MCP overhead: `send_customer_message` through MCP (in-process and streamable HTTP) minus a direct client call.

    .venv/bin/python -m benchmarks.mcp_overhead [--calls N] [--write]

The sandbox runs in its own process (delay 0) and answers every stream request with the same ~1 KB reply
(a `raw_chunks` fault, one event per write, as it streams normally). Each round makes one call of each kind,
in a shuffled order: `LexeyClient.customer.send_message` (direct), the tool through
`mcp.Client(build_server(settings))` (in-process), and through `lexey-mcp --transport http` in a subprocess;
each MCP path with and without a progress callback. Logging is set up as `lexey-mcp` sets it up (INFO).
Reported: median and p99 latency, and the median of the per-round differences to the direct call; then the
SDK's own floor (calls that make no upstream request), and a check that progress stays at or under 20
notifications per second on a ~1 s stream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.server import MCPServer

from benchmarks._common import (
    chat_body,
    delta_texts,
    free_port,
    header,
    median,
    percentile,
    sandbox_process,
    wait_for_port,
    write_section,
)
from lexey_mcp.cli import configure_logging
from lexey_mcp.client import LexeyClient
from lexey_mcp.config import Settings
from lexey_mcp.sandbox import client_env
from lexey_mcp.server import build_server

CID = str(uuid.UUID(int=7))
REPLY = delta_texts(40, 25, plain=True)  # 1,000 characters in 40 deltas
DIRECT = "direct `LexeyClient.customer.send_message`"


def settings_for(env: dict[str, str]) -> Settings:
    return Settings(
        _env_file=None,
        base_url=env["LEXEY_BASE_URL"],
        lexi_base_url=env["LEXI_BASE_URL"],
        customer_key=env["LEXEY_CUSTOMER_KEY"],
        management_key=env["LEXEY_MANAGEMENT_KEY"],
        lexi_api_key=env["LEXI_API_KEY"],
    )


def events(body: bytes) -> list[str]:
    """One write per event, as the sandbox streams (latin-1: the fault's encoding for raw bytes)."""
    return [piece + "\n\n" for piece in body.decode("latin-1").split("\n\n") if piece]


@contextlib.contextmanager
def http_server(env: dict[str, str], bare: bool = False) -> Iterator[str]:
    """`lexey-mcp --transport http` (or the bare SDK server) in its own process; yields its MCP URL."""
    port = free_port()
    if bare:
        args = [sys.executable, str(Path(__file__).with_name("bare_server.py")), "http", str(port)]
    else:
        args = [str(Path(sys.executable).with_name("lexey-mcp")), "--transport", "http", "--port", str(port)]
    proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


async def inject(root: str, chunks: list[str], times: int, drip: float | None = None) -> None:
    fault: dict[str, Any] = {"target": "customer", "times": times, "raw_chunks": chunks}
    if drip:
        fault["drip_seconds"] = drip
    async with httpx2.AsyncClient(trust_env=False) as http:
        await http.delete(f"{root}/_sandbox/faults")
        (await http.post(f"{root}/_sandbox/faults", json=fault)).raise_for_status()


class Progress:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.count += 1


async def echo(text: str) -> str:
    """Say it back."""
    return text


BAD_CALL = ("get_conversation_messages", {"conversation_id": "not-a-uuid"})


async def skip_validation(name: str, result: Any) -> None:
    return None


def floor_call(client: Client, name: str, arguments: dict[str, Any]) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        result = await client.call_tool(name, arguments)
        assert result.is_error == (name != "echo"), result

    return call


def tool_call(client: Client, progress: Progress | None) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        result = await client.call_tool(
            "send_customer_message", {"message": "hi", "conversation_id": CID}, progress_callback=progress
        )
        assert not result.is_error, result
        assert result.structured_content is not None
        assert result.structured_content["outcome"] == "complete"

    return call


async def run(calls: int) -> str:
    body = chat_body(REPLY)
    lines = []
    with sandbox_process(0.0) as root:
        env = client_env(root)
        settings = settings_for(env)
        configure_logging(settings.log_level, settings.configured_secrets())  # before MCPServer, as the CLI does
        await inject(root, events(body), times=10 * calls + 1000)
        progress = Progress()
        bare_server = MCPServer("bare")
        bare_server.add_tool(echo)
        with http_server(env) as url, http_server(env, bare=True) as bare_url:
            async with (
                LexeyClient(settings, trust_env=False) as direct,
                Client(build_server(settings)) as inproc,
                Client(url) as http,
                Client(bare_server) as bare_inproc,
                Client(bare_url) as bare_http,
                Client(build_server(settings)) as unchecked,
            ):
                # An experiment, not a configuration: how much of the in-process overhead is the client checking
                # each result against the tool's outputSchema (pure-Python jsonschema, in the SDK's ClientSession).
                unchecked.session.validate_tool_result = skip_validation  # type: ignore[method-assign]

                async def direct_call() -> None:
                    result = await direct.customer.send_message(CID, "hi")
                    assert result.text == "".join(REPLY), result

                kinds: dict[str, Callable[[], Awaitable[None]]] = {
                    DIRECT: direct_call,
                    "MCP in-process": tool_call(inproc, None),
                    "MCP in-process + progress callback": tool_call(inproc, progress),
                    "MCP in-process, client's outputSchema check skipped (experiment)": tool_call(unchecked, None),
                    "MCP streamable HTTP": tool_call(http, None),
                    "MCP streamable HTTP + progress callback": tool_call(http, progress),
                }
                # The SDK's own floor: a bare server's one-line tool, and our server answering before any request.
                floors: dict[str, Callable[[], Awaitable[None]]] = {
                    "bare SDK server, `echo` tool, in-process": floor_call(bare_inproc, "echo", {"text": "hi"}),
                    "bare SDK server, `echo` tool, streamable HTTP": floor_call(bare_http, "echo", {"text": "hi"}),
                    "lexey-mcp, tool error before any request, in-process": floor_call(inproc, *BAD_CALL),
                    "lexey-mcp, tool error before any request, streamable HTTP": floor_call(http, *BAD_CALL),
                }
                kinds.update(floors)
                samples: dict[str, list[float]] = {k: [] for k in kinds}
                order = list(kinds.items())
                for i in range(calls + 50):
                    random.shuffle(order)  # no kind always runs right after another
                    for kind, call in order:
                        start = time.perf_counter()
                        await call()
                        if i >= 50:  # warm-up rounds are not counted
                            samples[kind].append(time.perf_counter() - start)
                lines += [
                    "| path | median | p99 | overhead: median (p99) of per-round differences | target |",
                    "|---|---:|---:|---:|---|",
                ]
                for kind, values in samples.items():
                    if kind in floors:
                        continue
                    diffs = [v - d for v, d in zip(values, samples[DIRECT], strict=True)]
                    target = "≤ 1 ms" if "in-process" in kind else "≤ 5 ms" if "HTTP" in kind else ""
                    over = f"**{median(diffs) * 1e3:.2f} ms** ({percentile(diffs, 99) * 1e3:.2f} ms)"
                    over = "" if kind == DIRECT else over
                    lines.append(
                        f"| {kind} | {median(values) * 1e3:.2f} ms | {percentile(values, 99) * 1e3:.2f} ms "
                        f"| {over} | {target} |"
                    )
                lines += ["\n| floor: no upstream request at all | median | p99 |", "|---|---:|---:|"]
                for kind in floors:
                    values = samples[kind]
                    lines.append(f"| {kind} | {median(values) * 1e3:.2f} ms | {percentile(values, 99) * 1e3:.2f} ms |")
                lines.append(
                    f"\n{calls} rounds after 50 warm-up rounds; reply {len(''.join(REPLY))} characters in "
                    f"{len(REPLY)} deltas ({len(body)} bytes on the wire, one write per event).\n"
                )

                # Progress coalescing on a ~1 s stream: 200 deltas, 5 ms apart.
                slow = events(chat_body(delta_texts(200, 5, plain=True)))
                lines += [
                    "| progress check: 200 deltas 5 ms apart | duration | notifications | per second | target |",
                    "|---|---:|---:|---:|---|",
                ]
                for name, client in (("in-process", inproc), ("streamable HTTP", http)):
                    await inject(root, slow, times=1, drip=0.005)
                    progress.count = 0
                    start = time.perf_counter()
                    await tool_call(client, progress)()
                    took = time.perf_counter() - start
                    lines.append(f"| {name} | {took:.2f} s | {progress.count} | {progress.count / took:.1f} | ≤ 20/s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = parser.parse_args()
    text = header("## 2. MCP overhead") + "\n" + asyncio.run(run(args.calls)) + "\n"
    print(text)
    if args.write:
        write_section("mcp_overhead", text)


if __name__ == "__main__":
    main()
