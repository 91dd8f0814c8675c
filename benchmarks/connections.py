"""Connections: sequential calls to one API over TLS, the connections they open and the wall time per call.

    .venv/bin/python -m benchmarks.connections [--calls 100] [--rounds 5] [--write]

The sandbox runs in its own process behind nginx, which terminates TLS (HTTP/1.1 and HTTP/2, a certificate this
benchmark makes for 127.0.0.1) and keeps its own connections to the sandbox. Each contender, in interleaved rounds,
makes a fresh client, creates a conversation and then sends `--calls` customer messages one after another
(the sandbox's reply: a few deltas, no delay); connections are counted where nginx accepts them (distinct
`$connection` serial numbers in its access log). Contenders:

* hand-written: an `httpx2.AsyncClient` that keeps its connection: it reads each reply to the end of its body
  (`httpx2.EventSource` + `json.loads`), so the pool reuses the connection; the baseline;
* `LexeyClient.customer.send_message` as shipped (after `[DONE]` it reads the body's end, within a bound);
* the same, closing after `[DONE]` (how it was before: a new TCP + TLS connection per call);
* the `send_customer_message` MCP tool through an in-process `mcp.Client` (adds the MCP overhead of §2);
* with `h2` installed (`pip install 'httpx2[http2]'`): the hand-written client and `LexeyClient` over HTTP/2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import importlib.util
import ipaddress
import json
import logging
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mcp import Client

import lexey_mcp.client
from benchmarks._common import free_port, header, listening, wait_for_port, write_section
from lexey_mcp.client import LexeyClient
from lexey_mcp.config import Settings
from lexey_mcp.sandbox import client_env, settings_for
from lexey_mcp.server import ServerOptions, build_server

#: httpx2's HTTP/2 support (`pip install 'httpx2[http2]'`) is installed.
HTTP2 = importlib.util.find_spec("h2") is not None


# The sandbox in its own process, without its per-conversation message limit (a round sends more than 50).
SANDBOX = """
import sys
from lexey_mcp.sandbox import SandboxConfig, serve
sys.exit(serve("127.0.0.1", int(sys.argv[1]), SandboxConfig(delay=0.0, message_limit=1_000_000)))
"""


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files in `directory`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@contextlib.contextmanager
def nginx_tls(prefix: Path, upstream_port: int, cert: Path, key: Path) -> Iterator[int]:
    """nginx terminating TLS in front of the sandbox; yields its port. Access log: one line per request, starting
    with the serial number of the connection that carried it."""
    port = free_port()
    (prefix / "tmp").mkdir(parents=True)
    temp = " ".join(f"{k}_temp_path {prefix}/tmp/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (prefix / "nginx.conf").write_text(
        f"worker_processes 1; daemon off; pid {prefix}/nginx.pid; error_log {prefix}/error.log warn;\n"
        "events { worker_connections 256; }\n"
        f"http {{ {temp}\n"
        "  log_format conn '$connection $connection_requests $server_protocol $status $request_uri';\n"
        f"  access_log {prefix}/access.log conn;\n"
        f"  upstream sandbox {{ server 127.0.0.1:{upstream_port}; keepalive 8; }}\n"
        f"  server {{ listen 127.0.0.1:{port} ssl http2; ssl_certificate {cert}; ssl_certificate_key {key};\n"
        "    keepalive_requests 100000; keepalive_timeout 60s; http2_max_requests 100000;\n"
        "    location / { proxy_pass http://sandbox; proxy_http_version 1.1; proxy_set_header Connection '';\n"
        "      proxy_set_header Host $host; proxy_buffering off; } } }\n"
    )
    nginx = "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx"
    proc = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def connections_of(log: Path, conversation_id: str) -> tuple[int, int, set[str]]:
    """(requests, distinct connections, protocols) of the messages sent to one conversation, from nginx's log."""
    lines = [line.split() for line in log.read_text().splitlines() if conversation_id in line]
    return len(lines), len({fields[0] for fields in lines}), {fields[2] for fields in lines}


# Contenders: each opens its client on `stack` and creates a conversation; then `call(i)` sends message i to it.

Call = Callable[[int], Awaitable[None]]
Opener = Callable[[Settings, ssl.SSLContext, contextlib.AsyncExitStack], Awaitable[tuple[str, Call]]]


async def hand_written(
    http2: bool, settings: Settings, tls: ssl.SSLContext, stack: contextlib.AsyncExitStack
) -> tuple[str, Call]:
    headers = {"Authorization": f"Bearer {settings.key('customer').get_secret_value()}"}
    http = await stack.enter_async_context(httpx2.AsyncClient(verify=tls, http2=http2, trust_env=False, timeout=30))
    cid = (await http.post(f"{settings.base_url}/customer/conversations", headers=headers)).json()["conversationId"]
    url = f"{settings.base_url}/customer/conversations/{cid}/messages"
    stream_headers = {**headers, "Accept": "text/event-stream"}

    async def call(i: int) -> None:
        parts = []
        body = {"message": f"What are your hours? ({i})"}
        async with http.stream("POST", url, json=body, headers=stream_headers) as response:
            async for event in httpx2.EventSource(response):  # to the body's end: the connection is kept
                if event.data != "[DONE]":
                    obj = json.loads(event.data)
                    if obj.get("type") == "delta":
                        parts.append(obj["text"])
        assert parts

    return cid, call


async def lexey(
    http2: bool, drain: bool, settings: Settings, tls: ssl.SSLContext, stack: contextlib.AsyncExitStack
) -> tuple[str, Call]:
    transport = None
    if http2:  # LexeyClient's own pool settings, on an HTTP/2 transport
        limits = httpx2.Limits(max_connections=None, max_keepalive_connections=lexey_mcp.client.IDLE_CONNECTIONS)
        transport = httpx2.AsyncHTTPTransport(verify=tls, http2=True, limits=limits, trust_env=False)
    client = await stack.enter_async_context(LexeyClient(settings, transport=transport))
    cid = await client.customer.create_conversation()

    async def call(i: int) -> None:
        shipped = lexey_mcp.client.__dict__["drain"]  # the client's own name for `stream_reading.drain`
        if not drain:  # closed right after [DONE], as before (calls are sequential: patched for this one only)
            setattr(lexey_mcp.client, "drain", _no_drain)  # noqa: B010 - a module's global, on purpose
        try:
            result = await client.customer.send_message(cid, f"What are your hours? ({i})")
        finally:
            setattr(lexey_mcp.client, "drain", shipped)  # noqa: B010
        assert result.outcome == "complete", result

    return cid, call


async def _no_drain(chunks: object) -> None:
    pass


async def mcp_tool(settings: Settings, tls: ssl.SSLContext, stack: contextlib.AsyncExitStack) -> tuple[str, Call]:
    client = await stack.enter_async_context(Client(build_server(settings, ServerOptions(toolsets=["customer"]))))
    cid = str((await client.call_tool("create_conversation", {})).structured_content["conversation_id"])

    async def call(i: int) -> None:
        result = await client.call_tool("send_customer_message", {"conversation_id": cid, "message": f"hi {i}"})
        assert not result.is_error
        assert result.structured_content["outcome"] == "complete"

    return cid, call


def contenders() -> dict[str, Opener]:
    found: dict[str, Opener] = {
        "hand-written httpx2, keeps its connection (HTTP/1.1)": functools.partial(hand_written, False),
        "LexeyClient (HTTP/1.1), as shipped": functools.partial(lexey, False, True),
        "LexeyClient (HTTP/1.1), closing after [DONE] (before)": functools.partial(lexey, False, False),
        "`send_customer_message` tool, in-process MCP (HTTP/1.1)": mcp_tool,
    }
    if HTTP2:
        found["hand-written httpx2, keeps its connection (HTTP/2)"] = functools.partial(hand_written, True)
        found["LexeyClient (HTTP/2 transport)"] = functools.partial(lexey, True, True)
    return found


@contextlib.contextmanager
def trusting(cert: Path) -> Iterator[None]:
    """LexeyClient and the MCP tool build their own TLS context: it trusts SSL_CERT_FILE."""
    saved = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(cert)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = saved


async def run(calls: int, rounds: int) -> str:
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # the SDK's server turns on a line per request
    load = os.getloadavg()
    found = contenders()
    times: dict[str, list[float]] = {name: [] for name in found}
    counted: dict[str, list[tuple[int, int, set[str]]]] = {name: [] for name in found}
    sandbox_port = free_port()
    sandbox = [sys.executable, "-c", SANDBOX, str(sandbox_port)]
    with tempfile.TemporaryDirectory() as tmp, listening(sandbox, sandbox_port):
        cert, key = make_certificate(Path(tmp))
        tls = ssl.create_default_context(cafile=str(cert))
        with nginx_tls(Path(tmp) / "nginx", sandbox_port, cert, key) as port, trusting(cert):
            settings = settings_for(client_env(f"https://127.0.0.1:{port}"), Settings(_env_file=None, max_retries=0))
            for round_ in range(rounds + 1):  # the first warms up (imports, the sandbox's code paths); not counted
                async with contextlib.AsyncExitStack() as stack:
                    opened = {name: await opener(settings, tls, stack) for name, opener in found.items()}
                    order = list(opened)
                    for i in range(calls if round_ else 5):
                        for name in order[i % len(order) :] + order[: i % len(order)]:  # interleaved, rotating
                            started = time.perf_counter()
                            await opened[name][1](i)
                            if round_:
                                times[name].append(time.perf_counter() - started)
                if round_:
                    for name, (cid, _) in opened.items():
                        counted[name].append(connections_of(Path(tmp) / "nginx" / "access.log", cid))
                    print(f"round {round_}:", {name: c[-1][1] for name, c in counted.items()}, flush=True)
    baseline = statistics.median(times[next(iter(found))])
    rows = [
        "| client | connections per round (requests) | protocol | median ms per call | p90 "
        "| vs hand-written HTTP/1.1 |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name in found:
        per_call = statistics.median(times[name])
        p90 = sorted(times[name])[int(len(times[name]) * 0.9)]
        connections = "/".join(str(c) for _, c, _ in counted[name])
        protocols = ", ".join(sorted({p for _, _, ps in counted[name] for p in ps}))
        rows.append(
            f"| {name} | {connections} ({counted[name][0][0]}) | {protocols} | {per_call * 1e3:.2f} | "
            f"{p90 * 1e3:.2f} | **{per_call / baseline:.2f}×** |"
        )
    return (
        "\n".join(rows)
        + f"\n\nEach round: a fresh client per contender and a conversation each, then {calls} messages per "
        "contender, one call at a time, the contenders taking turns (rotating order); medians over every call of "
        f"{rounds} rounds. nginx 1 worker, TLS 1.3, ECDSA P-256. Load average at the start: "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min).\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="replace this benchmark's section of BENCHMARKS.md")
    args = parser.parse_args()
    table = asyncio.run(run(args.calls, args.rounds))
    print(table)
    if args.write:
        write_section("connections", header("## 10. Connections reused (TLS)") + "\n" + table)


if __name__ == "__main__":
    main()
