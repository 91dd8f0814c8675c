"""Debian's headless Chromium for tests: a page's DOM once its scripts have run, a screenshot decoded to pixels (a
small PNG reader, so that no imaging library is needed), and the DevTools protocol over a pipe (no WebSocket
library needed) for what needs a live page, such as printing or reading a sandboxed iframe (every frame runs in the
page's process: site isolation off, sandboxed iframes included, so each frame's document is reachable through its
own execution context, as the DevTools' console reaches it). `bundle` makes a browser script of a Node package."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import struct
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.test_examples import require

CHROMIUM = "/usr/bin/chromium"
#: Node tools CI installs (`.ci/node/package.json`): esbuild, and the packages it bundles for a page.
NODE_MODULES = Path(__file__).resolve().parents[1] / ".ci" / "node" / "node_modules"
#: Generous: Chromium starts slowly on a loaded 2-core machine.
BROWSER_SECONDS = 120


def chromium() -> str:
    """Chromium's path; skips (fails in CI, LEXEY_CI_REQUIRE=chromium) without it."""
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        require("chromium", "headless Chromium is not installed (apt-get install chromium)")
    return found


def bundle(entry: str, out: Path, global_name: str) -> str:
    """`entry` (JavaScript importing from `.ci/node`'s packages) bundled for a classic <script>, as text."""
    esbuild = NODE_MODULES / ".bin" / "esbuild"
    if not esbuild.exists():
        require("esbuild", "esbuild is not installed (.ci/run installs it into .ci/node/node_modules)")
    source = out.with_suffix(".entry.js")
    source.write_text(entry)
    subprocess.run(
        [str(esbuild), str(source), "--bundle", "--format=iife", f"--global-name={global_name}", f"--outfile={out}"],
        check=True,
        capture_output=True,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        timeout=BROWSER_SECONDS,
    )
    return out.read_text()


def _headless(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start; the page is our own file.
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", *args]
    return subprocess.run(
        [*command, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=BROWSER_SECONDS,
        check=True,
    )


def rendered_dom(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, as HTML."""
    return _headless(page, profile, "--dump-dom").stdout


def screenshot(page: Path, profile: Path, out: Path, width: int, height: int) -> Png:
    """A screenshot of the page's first `width`×`height` CSS pixels, decoded."""
    _headless(page, profile, f"--screenshot={out}", f"--window-size={width},{height}", "--hide-scrollbars")
    return read_png(out.read_bytes())


@dataclass
class Png:
    width: int
    height: int
    pixels: list[tuple[int, int, int]]  # row by row


def read_png(data: bytes) -> Png:
    """An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) as RGB pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, idat, header = 8, b"", b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        at += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, colour, interlace) in ((8, 2, 0), (8, 6, 0)), (depth, colour, interlace)
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw, rows, previous = zlib.decompress(idat), [], bytearray(stride)
    for y in range(height):
        kind, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = row[x - channels] if x >= channels else 0
            up, corner = previous[x], previous[x - channels] if x >= channels else 0
            row[x] = (row[x] + _predict(kind, left, up, corner)) & 0xFF
        rows.append(row)
        previous = row
    pixels = [tuple(row[x : x + 3]) for row in rows for x in range(0, stride, channels)]
    return Png(width, height, pixels)  # type: ignore[arg-type]  # 3-tuples by construction


def _predict(kind: int, left: int, up: int, corner: int) -> int:
    if kind == 0:
        return 0
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    estimate = left + up - corner
    near = min((abs(estimate - left), 0, left), (abs(estimate - up), 1, up), (abs(estimate - corner), 2, corner))
    return near[2]


def _above(fd: int, lowest: int) -> int:
    """`fd` moved to a number above `lowest` (the old one closed)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest + 1)
    os.close(fd)
    return moved


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages ended
    by NUL on file descriptors 3 and 4), with one page open at `page`."""

    def __init__(self, page: Path, profile: Path) -> None:
        commands_read, self._commands = os.pipe()
        self._events, events_write = os.pipe()
        # Above 4, so that putting one on 3 cannot overwrite the other.
        commands_read, events_write = (_above(fd, 4) for fd in (commands_read, events_write))

        def pipes_as_3_and_4() -> None:  # in the child; pass_fds then keeps 3 and 4 open
            os.dup2(commands_read, 3)
            os.dup2(events_write, 4)

        arguments = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--disable-features=site-per-process,IsolateOrigins,IsolateSandboxedIframes",
            f"--user-data-dir={profile}",
        ]
        self._process = subprocess.Popen(
            [chromium(), *arguments],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=pipes_as_3_and_4,
            pass_fds=(3, 4),
        )
        os.close(commands_read)
        os.close(events_write)
        self._buffer = b""
        self._id = 0
        self.contexts: set[int] = set()  # the page's frames' execution contexts (once `frames()` is called)
        self.console: list[str] = []  # what the page's frames logged and threw: said when a frame wait fails
        target = self.send("Target.createTarget", url=page.resolve().as_uri())["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def send(self, method: str, session: bool = False, **params: object) -> dict[str, Any]:
        """The result of one command (to the page when `session`), events before it skipped."""
        self._id += 1
        message: dict[str, object] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + BROWSER_SECONDS
        while True:
            while b"\0" not in self._buffer:
                assert time.monotonic() < deadline, f"no answer to {method} within {BROWSER_SECONDS} s"
                chunk = os.read(self._events, 65536)
                assert chunk, f"Chromium closed the pipe before answering {method}"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            self._note(answer)
            if answer.get("id") == self._id:
                assert "error" not in answer, answer
                result: dict[str, Any] = answer["result"]
                return result

    def _note(self, message: dict[str, Any]) -> None:
        """Keep track of the frames' execution contexts and what they log (events `frames()` turned on)."""
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.executionContextCreated":
            self.contexts.add(params["context"]["id"])
        elif method == "Runtime.executionContextDestroyed":
            self.contexts.discard(params["executionContextId"])
        elif method == "Runtime.executionContextsCleared":
            self.contexts.clear()
        elif method == "Runtime.consoleAPICalled":
            words = (str(a.get("value", a.get("description"))) for a in params["args"])
            self.console.append(f"{params['type']}: {' '.join(words)}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.console.append(f"exception: {details.get('exception', {}).get('description', details.get('text'))}")

    def frames(self) -> None:
        """Report every frame's execution context from now on (and those there already)."""
        self.send("Runtime.enable", session=True)

    def in_any_frame(self, expression: str) -> Any:
        """The first truthy value of `expression` in any frame of the page (after `frames()`), polled until
        BROWSER_SECONDS, or a failure quoting the page's console."""
        deadline = time.monotonic() + BROWSER_SECONDS
        while time.monotonic() < deadline:
            for context in list(self.contexts):
                try:
                    answer = self.send(
                        "Runtime.evaluate", session=True, expression=expression, returnByValue=True, contextId=context
                    )
                except AssertionError:  # the frame went away meanwhile (its context with it)
                    continue
                value = None if "exceptionDetails" in answer else answer["result"].get("value")
                if value:
                    return value
            time.sleep(0.05)  # polling the frames for the condition, not waiting for time to pass
        console = "\n".join(self.console)
        raise AssertionError(f"no frame has {expression} within {BROWSER_SECONDS} s; console:\n{console}")

    def screenshot(self, out: Path) -> Png:
        """The page as it is now, saved to `out` and decoded."""
        data = base64.b64decode(self.send("Page.captureScreenshot", session=True, format="png")["data"])
        out.write_bytes(data)
        return read_png(data)

    def evaluate(self, expression: str) -> Any:
        """A JavaScript expression's value in the page."""
        answer = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        assert "exceptionDetails" not in answer, answer
        return answer["result"].get("value")

    def wait_for(self, expression: str) -> None:
        deadline = time.monotonic() + BROWSER_SECONDS
        while not self.evaluate(expression):
            assert time.monotonic() < deadline, f"{expression} not true within {BROWSER_SECONDS} s"
            time.sleep(0.05)  # polling the page for the condition, not waiting for time to pass

    def close(self) -> None:
        with contextlib.suppress(OSError, AssertionError):
            self.send("Browser.close")
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._commands)
        os.close(self._events)
