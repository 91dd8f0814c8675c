"""Webhooks: how many signed webhooks one `lexey-mcp --transport http` process accepts per second, and the delay
from a webhook's POST to a subscribed listener's notification, in one process and across two replicas through
Redis.

    .venv/bin/python -m benchmarks.webhooks [--webhooks 2000] [--concurrency 50] [--notifications 200] [--write]

Throughput: distinct `conversation.escalated` webhooks posted by --concurrency loopback clients at once, each
verified, parsed, stored (SQLite in a temporary directory, or Redis) and announced; the baseline is the same
process refusing the same POSTs with a wrong signature (401: the HTTP and routing cost alone).
Delay: one `subscriptions/listen` stream on `lexey://escalations`; webhooks posted one at a time, each waiting for
its notification; POST start to notification, median and p99. "across replicas": the listener on replica A,
the webhooks posted to replica B, both on one redis-server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from benchmarks._common import free_port, header, listening, median, percentile, write_section
from lexey_mcp.events.receiver import sign
from lexey_mcp.paths import WEBHOOK_PATH

SECRET = "benchmark-secret-0123456789"
ESCALATIONS = "lexey://escalations"


def webhook(n: int) -> bytes:
    import json

    return json.dumps(
        {
            "event": "conversation.escalated",
            "timestamp": f"2026-11-30T09:00:00.{n + 1000:06d}Z",
            "conversation": {"id": str(uuid.uuid4()), "status": "escalated", "customerIdentifier": f"c{n}"},
            "messages": [{"role": "user", "content": "I want a refund.", "createdAt": "2026-11-30T08:59:00Z"}],
            "payload": {"reason": "Refund request"},
        }
    ).encode()


@contextlib.contextmanager
def redis_process(directory: Path) -> Iterator[str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", ""]
    with listening(args, port):
        yield f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def server_process(state: Path, redis_url: str | None = None) -> Iterator[str]:
    """`lexey-mcp --transport http --stateless` with the webhook receiver on; yields its root URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXEY_", "LEXI_"))}
    env |= {"LEXEY_WEBHOOK_SECRET": SECRET, "LEXEY_STATE_DIR": str(state), "LEXEY_LOG_LEVEL": "WARNING"}
    if redis_url:
        env["LEXEY_REDIS_URL"] = redis_url
    command = [sys.executable, "-m", "lexey_mcp", "--transport", "http", "--stateless", "--port", str(port)]
    with listening(command, port, env):
        yield f"http://127.0.0.1:{port}"


async def throughput(root: str, count: int, concurrency: int, *, signed: bool) -> float:
    """Webhooks per second over the whole burst (every answer checked: 200 signed, 401 otherwise)."""
    bodies = [webhook(n) for n in range(count)]
    url = f"{root}{WEBHOOK_PATH}"
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    expected = 200 if signed else 401
    async with httpx2.AsyncClient(trust_env=False, timeout=60, limits=limits) as http:
        queue = iter(bodies)

        async def worker() -> None:
            for body in queue:
                signature = sign(SECRET if signed else "wrong", body)
                response = await http.post(url, content=body, headers={"x-lexey-signature": signature})
                if response.status_code != expected:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text}")

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(concurrency):
                group.start_soon(worker)
        return count / (time.perf_counter() - started)


async def delays(listen_root: str, post_root: str, count: int, warmup: int = 20) -> list[float]:
    """Milliseconds from each POST's start to the listener's notification (after `warmup` unmeasured ones)."""
    found: list[float] = []
    async with (
        httpx2.AsyncClient(trust_env=False, timeout=60) as http,
        Client(streamable_http_client(f"{listen_root}/mcp", http_client=http)) as client,
        client.listen(resource_subscriptions=[ESCALATIONS]) as subscription,
        httpx2.AsyncClient(trust_env=False, timeout=60) as poster,
    ):
        for n in range(-warmup, count):
            body = webhook(n)
            started = time.perf_counter()
            response = await poster.post(
                f"{post_root}{WEBHOOK_PATH}", content=body, headers={"x-lexey-signature": sign(SECRET, body)}
            )
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            with anyio.fail_after(10):
                await subscription.__anext__()
            if n >= 0:
                found.append((time.perf_counter() - started) * 1000)
    return found


def run(args: argparse.Namespace) -> str:
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lexey-bench-webhooks-") as tmp:
        base = Path(tmp)
        with server_process(base / "sqlite") as root:
            anyio.run(lambda: throughput(root, 200, args.concurrency, signed=False))  # warm-up
            refused = anyio.run(lambda: throughput(root, args.webhooks, args.concurrency, signed=False))
            accepted = anyio.run(lambda: throughput(root, args.webhooks, args.concurrency, signed=True))
            local = anyio.run(delays, root, root, args.notifications)
        (base / "redis").mkdir()
        with (
            redis_process(base / "redis") as redis_url,
            server_process(base / "a", redis_url) as replica_a,
            server_process(base / "b", redis_url) as replica_b,
        ):
            accepted_redis = anyio.run(lambda: throughput(replica_b, args.webhooks, args.concurrency, signed=True))
            across = anyio.run(delays, replica_a, replica_b, args.notifications)
    rows.append("| measure | result |")
    rows.append("|---|---|")
    rows.append(f"| refused (bad signature, 401): baseline | {refused:,.0f} requests/s |")
    rows.append(f"| accepted, SQLite store | {accepted:,.0f} webhooks/s ({accepted / refused:.2f}x the baseline) |")
    rows.append(f"| accepted, Redis store | {accepted_redis:,.0f} webhooks/s ({accepted_redis / refused:.2f}x) |")
    rows.append(
        f"| POST → notification, one process | median {median(local):.1f} ms, p99 {percentile(local, 99):.1f} ms |"
    )
    rows.append(
        f"| POST → notification, replica B → A via Redis | median {median(across):.1f} ms, "
        f"p99 {percentile(across, 99):.1f} ms |"
    )
    notes = (
        f"{args.webhooks} distinct webhooks per throughput run, {args.concurrency} concurrent loopback clients; "
        f"{args.notifications} notifications per delay run, one webhook at a time."
    )
    return header("## 6. Webhooks") + "\n" + notes + "\n\n" + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--notifications", type=int, default=200)
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args: Any = parser.parse_args()
    section = run(args)
    print(section)
    if args.write:
        write_section("webhooks", section)


if __name__ == "__main__":
    main()
