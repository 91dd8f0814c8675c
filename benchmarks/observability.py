"""Observability overhead: one `send_customer_message` call in-process, metrics and spans on vs off.

    .venv/bin/python -m benchmarks.observability [--calls N] [--write]

Two servers in this process, built alike from the same settings: `build_server(settings)` (metrics, the
`lexey.upstream` span, `traceparent` upstream) and `build_server(settings, observe=False)` (none of it). Each
round calls both, in a shuffled order, through `mcp.Client(server)`; the sandbox runs in its own process and
answers every stream with the same ~1 KB reply (as benchmarks.mcp_overhead does). Two phases, same run:
first with no OpenTelemetry SDK (the API's no-op tracer: what a deployment without tracing pays), then with
the SDK's `TracerProvider` and a `BatchSpanProcessor` into an exporter that drops the spans (what a traced
deployment pays, short of the network). The SDK's own `tools/call` span is there in both servers of a phase.
Reported: medians, and the overhead as the median of per-round differences over the "off" median.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from mcp import Client
from opentelemetry.sdk.trace import ReadableSpan

from benchmarks._common import chat_body, header, median, percentile, sandbox_process, write_section
from benchmarks.mcp_overhead import CID, REPLY, events, inject, settings_for
from lexey_mcp.cli import configure_logging
from lexey_mcp.sandbox import client_env
from lexey_mcp.server import ServerOptions, build_server

TARGET = 0.05


def call(client: Client) -> Callable[[], Awaitable[None]]:
    async def one() -> None:
        result = await client.call_tool("send_customer_message", {"message": "hi", "conversation_id": CID})
        assert not result.is_error, result
        assert result.structured_content is not None
        assert result.structured_content["outcome"] == "complete"

    return one


Samples = dict[str, list[float]]


async def phase(root: str, calls: int) -> tuple[Samples, Samples]:
    """Per-call wall-clock and CPU seconds of this process, each {"on": […], "off": […]}."""
    settings = settings_for(client_env(root))
    await inject(root, events(chat_body(REPLY)), times=2 * calls + 200)
    async with (
        Client(build_server(settings)) as on,
        Client(build_server(settings, ServerOptions(observe=False))) as off,
    ):
        kinds = [("on", call(on)), ("off", call(off))]
        wall: Samples = {"on": [], "off": []}
        cpu: Samples = {"on": [], "off": []}
        for i in range(calls + 50):
            random.shuffle(kinds)
            for kind, one in kinds:
                start, start_cpu = time.perf_counter(), time.process_time()
                await one()
                if i >= 50:
                    wall[kind].append(time.perf_counter() - start)
                    cpu[kind].append(time.process_time() - start_cpu)
    return wall, cpu


def row(name: str, samples: Samples) -> tuple[str, float]:
    on, off = samples["on"], samples["off"]
    diffs = [a - b for a, b in zip(on, off, strict=True)]
    overhead = median(diffs) / median(off)
    line = (
        f"| {name} | {median(off) * 1e3:.2f} ms | {median(on) * 1e3:.2f} ms | {median(diffs) * 1e6:.0f} µs "
        f"(p99 {percentile(diffs, 99) * 1e6:.0f} µs) | **{overhead * 100:+.1f} %** | < {TARGET * 100:.0f} % |"
    )
    return line, overhead


class _Drop:
    """A span exporter that keeps nothing (the network is not what is measured)."""

    def export(self, spans: Sequence[ReadableSpan]) -> object:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


async def run(calls: int) -> tuple[str, float]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    lines = [
        "| tracing set-up, measure | off: median | on: median | on − off: median of per-round differences "
        "| overhead | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    worst = 0.0
    with sandbox_process(0.0) as root:
        settings = settings_for(client_env(root))
        configure_logging(settings.log_level, settings.configured_secrets())  # as the CLI does
        for name, samples in zip(("wall clock", "CPU time"), await phase(root, calls), strict=True):
            line, overhead = row(f"no OpenTelemetry SDK, {name}", samples)
            lines.append(line)
            worst = max(worst, overhead)
        provider = TracerProvider()
        processor = BatchSpanProcessor(_Drop())  # type: ignore[arg-type]
        provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        for name, samples in zip(("wall clock", "CPU time"), await phase(root, calls), strict=True):
            line, overhead = row(f"SDK `TracerProvider` + `BatchSpanProcessor`, {name}", samples)
            lines.append(line)
            worst = max(worst, overhead)
        processor.shutdown()  # type: ignore[no-untyped-call]
    lines.append(
        f"\n{calls} rounds per phase after 50 warm-up rounds, both servers in each round in a shuffled order; "
        f"reply {len(''.join(REPLY))} characters in {len(REPLY)} deltas. One call makes one upstream request "
        "(a stream): one `lexey.upstream` span, six metric updates. CPU time is this process's (client and "
        "server; the sandbox runs elsewhere), so other load on the machine does not blur it."
    )
    return "\n".join(lines), worst


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = parser.parse_args()
    table, worst = asyncio.run(run(args.calls))
    text = header("## 8. Observability overhead") + "\n" + table + "\n"
    print(text)
    print(f"worst overhead: {worst * 100:+.1f} % (target < {TARGET * 100:.0f} %)")
    if args.write:
        write_section("observability", text)


if __name__ == "__main__":
    main()
