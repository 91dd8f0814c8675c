#!/usr/bin/env python3
"""Two stateless lexey-mcp replicas behind nginx round-robin, sharing one upstream (the sandbox).

    python examples/http_replicas/run.py [--nginx PATH] [--calls N] [--keep] [--redis [PATH]]

Everything binds 127.0.0.1, on free ports:

    sandbox   python -m lexey_mcp.sandbox --port S          one Lexey + Lexi stand-in that both replicas use
    replicas  python -m lexey_mcp --transport http --stateless --port A|B
              with LEXEY_BASE_URL / LEXI_BASE_URL and the three keys pointing at the sandbox, and a bearer
              token (LEXEY_MCP_AUTH_TOKEN) that every MCP request must carry
    nginx     nginx.conf.template, round-robin over A and B, on port N

With --redis, the Redis variant: one redis-server (free port, temporary directory) that both replicas share
through LEXEY_REDIS_URL, and LEXEY_WEBHOOK_SECRET set on both. It also subscribes to lexey://escalations on
replica A, posts a signed Lexey webhook to replica B, and checks that A's listener is notified and that the
escalation is listed through nginx.

It then drives tool calls through nginx with `mcp.Client`, checks that both replicas served requests (nginx's
access log names the replica of every request) and that one customer conversation carries on across both, and
stops everything. Exit status: 0 all checks passed, 1 a check failed, 2 nginx or a process could not start.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from lexey_mcp.events.receiver import sign
from lexey_mcp.sandbox import client_env
from lexey_mcp.server import TOOLS as SERVER_TOOLS

HERE = Path(__file__).resolve().parent
TOOLS = {spec.name for spec in SERVER_TOOLS}  # the server's table: what it must offer


class SetupError(Exception):
    """A process did not start."""


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Processes:
    """Started processes, each logging to `<prefix>/<name>.log`; stopped in reverse order."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, command: list[str], env: dict[str, str], port: int) -> None:
        with (self.prefix / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.running.append((name, process))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SetupError(f"{name} exited with status {process.returncode}:\n{self.log(name)}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    print(f"started {name} (pid {process.pid}) on 127.0.0.1:{port}")
                    return
            except OSError:
                time.sleep(0.05)
        raise SetupError(f"{name} is not listening on {port} after 30 s:\n{self.log(name)}")

    def log(self, name: str) -> str:
        path = self.prefix / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop_all(self) -> None:
        for name, process in reversed(self.running):
            if process.poll() is None:
                process.send_signal(signal.SIGQUIT if name == "nginx" else signal.SIGTERM)  # graceful for each
        for name, process in reversed(self.running):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in 10 s: killing it", file=sys.stderr)
                process.kill()
                process.wait()
        self.running.clear()


def replica_env(sandbox_port: int, token: str, events: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXEY_", "LEXI_"))}
    return {
        **env,
        **events,
        **client_env(f"http://127.0.0.1:{sandbox_port}"),
        "LEXEY_MCP_AUTH_TOKEN": token,
        "LEXEY_LOG_LEVEL": "WARNING",
        "NO_PROXY": "127.0.0.1,localhost",
    }


def structured(result: CallToolResult, tool: str) -> dict[str, Any]:
    if result.is_error or result.structured_content is None:
        raise AssertionError(f"{tool} failed: {result.content}")
    content: dict[str, Any] = result.structured_content
    return content


async def drive(url: str, token: str, calls: int) -> list[str]:
    """Tool calls through the balancer; returns the failed checks."""
    failed: list[str] = []

    def expect(ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAILED'}] {what}")
        if not ok:
            failed.append(what)

    auth = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=auth, trust_env=False, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        names = {tool.name for tool in (await client.list_tools()).tools}
        expect(names == TOOLS, "tools/list through nginx: the expected tools")
        first = structured(await client.call_tool("send_customer_message", {"message": "Hi there!"}), "send")
        cid = first["conversation_id"]
        outcomes = [first["outcome"]]
        for i in range(calls):
            arguments = {"message": f"Question {i + 1}: what are your opening hours?", "conversation_id": cid}
            outcomes.append(structured(await client.call_tool("send_customer_message", arguments), "send")["outcome"])
        expect(set(outcomes) == {"complete"}, f"{len(outcomes)} customer messages, every reply complete")
        history = structured(await client.call_tool("get_conversation_messages", {"conversation_id": cid}), "history")
        expect(
            len(history["messages"]) == 2 * len(outcomes),
            f"one conversation across the replicas: {len(history['messages'])} messages in its history",
        )
        lexi = structured(await client.call_tool("lexi_chat", {"message": "Which deals are open?"}), "lexi_chat")
        expect(lexi["outcome"] == "complete", "lexi_chat through nginx")

    async with httpx2.AsyncClient(trust_env=False, timeout=30) as raw:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        headers = {"Accept": "application/json, text/event-stream"}
        response = await raw.post(url, json=body, headers=headers)
        expect(response.status_code == 401, f"no bearer token: HTTP {response.status_code} (401 expected)")
    return failed


async def drive_events(replica_a: str, webhook_b: str, balancer: str, token: str, secret: str) -> list[str]:
    """The Redis variant: a listener on replica A hears of a webhook posted to replica B."""
    failed: list[str] = []

    def expect(ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAILED'}] {what}")
        if not ok:
            failed.append(what)

    conversation_id = "6f9619ff-8b86-4d11-b42d-00c04fc964ff"
    payload: dict[str, Any] = {
        "event": "conversation.escalated",
        "timestamp": "2026-11-30T09:00:00.000Z",
        "conversation": {
            "id": conversation_id,
            "status": "escalated",
            "customerIdentifier": "ada@example.com",
            "createdAt": "2026-11-30T08:58:00.000Z",
        },
        "messages": [{"role": "user", "content": "I want a refund.", "createdAt": "2026-11-30T08:59:00.000Z"}],
        "payload": {"reason": "Refund request"},
    }
    body = json.dumps(payload).encode()
    auth = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=auth, trust_env=False, timeout=60) as http,
        Client(streamable_http_client(replica_a, http_client=http)) as on_a,
        on_a.listen(resource_subscriptions=["lexey://escalations"]) as subscription,
        httpx2.AsyncClient(trust_env=False, timeout=30) as lexey,
    ):
        headers = {"content-type": "application/json", "x-lexey-signature": sign(secret, body)}
        started = time.monotonic()
        response = await lexey.post(webhook_b, content=body, headers=headers)
        expect(response.status_code == 200, f"signed webhook to replica B: HTTP {response.status_code}")
        heard = None
        with anyio.move_on_after(10):
            heard = await subscription.__anext__()
        delay = (time.monotonic() - started) * 1000
        expect(
            getattr(heard, "uri", None) == "lexey://escalations",
            f"the listener on replica A was notified ({delay:.0f} ms after the POST)",
        )
    async with (
        httpx2.AsyncClient(headers=auth, trust_env=False, timeout=60) as http,
        Client(streamable_http_client(balancer, http_client=http)) as client,
    ):
        listed = structured(await client.call_tool("list_escalations", {}), "list_escalations")
        ids = [e["conversation_id"] for e in listed["escalations"]]
        expect(ids == [conversation_id], "list_escalations through nginx shows the escalation")
    return failed


def replicas_served(access_log: Path) -> Counter[str]:
    """POST /mcp requests per replica address, from nginx's access log."""
    served: Counter[str] = Counter()
    for line in access_log.read_text().splitlines():
        upstream, _, rest = line.partition(" ")
        if '"POST /mcp' in rest:
            served[upstream] += 1
    return served


def run(nginx: str, calls: int, prefix: Path, redis: str | None = None) -> int:
    (prefix / "tmp").mkdir()
    sandbox_port, port_a, port_b, listen, redis_port = free_ports(5)
    token = secrets.token_urlsafe(32)
    config = (HERE / "nginx.conf.template").read_text()
    for name, value in {
        "PREFIX": str(prefix),
        "REPLICA_A": str(port_a),
        "REPLICA_B": str(port_b),
        "LISTEN": str(listen),
    }.items():
        config = config.replace(f"@{name}@", value)
    (prefix / "nginx.conf").write_text(config)

    processes = Processes(prefix)
    try:
        python = sys.executable
        processes.start(
            "sandbox",
            [python, "-m", "lexey_mcp.sandbox", "--port", str(sandbox_port), "--delay", "0"],
            dict(os.environ),
            sandbox_port,
        )
        events = {"LEXEY_STATE_DIR": str(prefix / "state")}
        secret = secrets.token_urlsafe(32)
        if redis is not None:
            (prefix / "redis").mkdir()
            redis_args = [
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(prefix / "redis"),
                "--save",
                "",
            ]
            processes.start("redis", [redis, *redis_args], dict(os.environ), redis_port)
            events |= {"LEXEY_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "LEXEY_WEBHOOK_SECRET": secret}
        env = replica_env(sandbox_port, token, events)
        for name, port in (("replica-a", port_a), ("replica-b", port_b)):
            processes.start(
                name,
                [
                    python,
                    "-m",
                    "lexey_mcp",
                    "--transport",
                    "http",
                    "--stateless",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env,
                port,
            )
        processes.start("nginx", [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")], dict(os.environ), listen)

        url = f"http://127.0.0.1:{listen}/mcp"
        print(f"driving tool calls through {url}")
        try:
            failed = anyio.run(drive, url, token, calls)
            if redis is not None:
                replica_a, webhook_b = f"http://127.0.0.1:{port_a}/mcp", f"http://127.0.0.1:{port_b}/webhooks/lexey"
                print(f"Redis variant: listening on {replica_a}, posting a webhook to {webhook_b}")
                failed += anyio.run(drive_events, replica_a, webhook_b, url, token, secret)
        except Exception as exc:  # e.g. HTTP 421 from the replicas when nginx does not rewrite Host
            failed = [f"the tool calls failed: {exc!r}"]
            print(f"  [FAILED] {failed[0]}\n  nginx access log:\n{processes.log('access')}", file=sys.stderr)

        served = replicas_served(prefix / "access.log")
        print(f"requests served per replica (nginx access log): {dict(served)}")
        for port in (port_a, port_b):
            ok = served[f"127.0.0.1:{port}"] > 0
            print(f"  [{'ok' if ok else 'FAILED'}] replica 127.0.0.1:{port} served requests")
            if not ok:
                failed.append(f"replica on port {port} served no request")
    except SetupError as exc:
        print(f"could not start: {exc}", file=sys.stderr)
        return 2
    finally:
        processes.stop_all()
    if failed:
        print(f"{len(failed)} check(s) failed; logs in {prefix}", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx", help="the nginx binary")
    parser.add_argument("--calls", type=int, default=6, help="customer messages after the first (default 6)")
    parser.add_argument("--keep", action="store_true", help="keep the logs and nginx.conf (the path is printed)")
    parser.add_argument(
        "--redis",
        nargs="?",
        const=shutil.which("redis-server") or "/usr/bin/redis-server",
        help="the Redis variant: replicas share events through a redis-server (optionally its path)",
    )
    args = parser.parse_args()
    if args.redis is not None and not Path(args.redis).exists():
        print(f"redis-server not found ({args.redis}): install it (apt-get install redis-server)", file=sys.stderr)
        return 2
    if not Path(args.nginx).exists():
        print(
            f"nginx not found ({args.nginx}): install it (apt-get install nginx-light) or pass --nginx", file=sys.stderr
        )
        return 2
    prefix = Path(tempfile.mkdtemp(prefix="lexey-replicas-"))
    try:
        return run(args.nginx, args.calls, prefix, args.redis)
    finally:
        if args.keep:
            print(f"logs and nginx.conf kept in {prefix}")
        else:
            shutil.rmtree(prefix, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
