"""Shared by the benchmarks: the machine description, synthetic chat streams, sandboxes and BENCHMARKS.md."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import random
import re
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "BENCHMARKS.md"

_WORDS = (
    "the",
    "support",
    "agent",
    "order",
    "refund",
    "shipping",
    "your",
    "account",
    "we",
    "can",
    "help",
    "with",
    "that",
    "today",
    "policy",
    "days",
    "invoice",
    "delivery",
    "plan",
    "and",
    "to",
    "of",
    "in",
    "is",
    "Pro",
)
# A few characters that a real reply carries and that JSON escapes or UTF-8 encodes in more than one byte.
_EXTRAS = ("é", "—", "ü", "\n", '"', "€", "’")


def machine() -> str:
    """nproc, CPU model, Python, date: the header line of every result."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"nproc {nproc}, CPU {model}, Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    )


def command() -> str:
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", "-m", _module(), *sys.argv[1:]])


def _module() -> str:
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).stem


def delta_texts(n: int, size: int, *, plain: bool, seed: int = 0) -> list[str]:
    """`n` reply pieces of about `size` characters each; `plain` keeps them ASCII words (no JSON escapes)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        piece = ""
        while len(piece) < size:
            piece += rng.choice(_WORDS) + " "
            if not plain and rng.random() < 0.15:
                piece += rng.choice(_EXTRAS)
        out.append(piece[:size])
    return out


def chat_body(
    texts: list[str], *, eol: str = "\n", start_id: int = 1, done: bool = True, escaped: bool = False
) -> bytes:
    """The Lexey chat wire format, as the sandbox writes it: `id: N`, compact JSON, `[DONE]` last. `escaped`:
    non-ASCII text as `\\u` escapes, as Python's `json.dumps` writes it by default."""
    parts = []
    for i, text in enumerate(texts, start_id):
        data = json.dumps({"type": "delta", "text": text}, ensure_ascii=escaped, separators=(",", ":"))
        parts.append(f"id: {i}{eol}data: {data}{eol}{eol}")
    if done:
        parts.append(f"id: {start_id + len(texts)}{eol}data: [DONE]{eol}{eol}")
    return "".join(parts).encode()


def split(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def sandbox_process(delay: float = 0.0) -> Iterator[str]:
    """A sandbox in its own process (so it does not share our core); yields its root URL."""
    port = free_port()
    with listening([sys.executable, "-m", "lexey_mcp.sandbox", "--port", str(port), "--delay", str(delay)], port):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def listening(command: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    """`command` running (output discarded) once something listens on `port`; terminated after."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_kib(pid: int | None = None) -> int:
    """VmHWM (peak resident set) of a process, in KiB."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def rss_kib(pid: int | None = None) -> int:
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the `name` section of BENCHMARKS.md, between its two marker comments."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def header(title: str) -> str:
    return f"{title}\n\nMachine: {machine()}.  \nCommand: `{command()}`\n"
