"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: no
port, no WebSocket library): open a page, read what any of its frames rendered, take a screenshot.

Every frame runs in the page's process (site isolation off, sandboxed iframes included), so a sandboxed iframe's
document is reachable through its own execution context, as the DevTools' console reaches it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.test_examples import require
from tests.waiting import wait_until_sync

#: Node tools CI installs (`.ci/node/package.json`): esbuild bundles the ext-apps host bridge for the page.
NODE_MODULES = Path(__file__).resolve().parents[1] / ".ci" / "node" / "node_modules"


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        require("chromium", "Chromium is not installed (.ci/run installs Debian's chromium)")
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
        timeout=120,
    )
    return out.read_text()


class ProtocolError(RuntimeError):
    """A DevTools command answered with an error."""


class Page:
    """One tab, over the DevTools pipe."""

    def __init__(self, commands: Any, replies: Any) -> None:
        self._commands, self._replies = commands, replies
        self._buffer = b""
        self._next = 0
        self._session: str | None = None
        self.contexts: dict[int, dict[str, Any]] = {}  # execution context id -> its description
        self.console: list[str] = []  # what the page's frames logged and threw: said when a wait fails

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if self._session is not None:
            message["sessionId"] = self._session
        self._commands.write(json.dumps(message).encode() + b"\0")
        self._commands.flush()
        while True:
            reply = self._read()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise ProtocolError(f"{method}: {reply['error']}")
                return dict(reply["result"])

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._replies.fileno(), 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        if message.get("method") == "Runtime.executionContextCreated":
            context = message["params"]["context"]
            self.contexts[context["id"]] = context
        elif message.get("method") == "Runtime.executionContextDestroyed":
            self.contexts.pop(message["params"]["executionContextId"], None)
        elif message.get("method") == "Runtime.executionContextsCleared":
            self.contexts.clear()
        elif message.get("method") == "Runtime.consoleAPICalled":
            params = message["params"]
            self.console.append(
                f"{params['type']}: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif message.get("method") == "Runtime.exceptionThrown":
            details = message["params"]["exceptionDetails"]
            self.console.append(f"exception: {details.get('exception', {}).get('description', details.get('text'))}")
        return message

    def open(self, url: str, width: int, height: int) -> None:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", url=url)

    def evaluate(self, expression: str, context: int | None = None) -> Any:
        where = {} if context is None else {"contextId": context}
        try:
            answer = self.send("Runtime.evaluate", expression=expression, returnByValue=True, **where)
        except ProtocolError:  # the frame navigated away meanwhile (its context is gone)
            return None
        if "exceptionDetails" in answer:
            return None  # a context that went away meanwhile, or a document not there yet
        return answer["result"].get("value")

    def wait_for(self, expression: str) -> Any:
        """The first truthy value of `expression` in any frame of the page (`tests.waiting`'s deadline)."""
        found: list[Any] = []

        def seen() -> bool:
            found[:] = [value for context in list(self.contexts) if (value := self.evaluate(expression, context))]
            return bool(found)

        try:
            wait_until_sync(seen, f"a frame of the page has {expression}", poll=0.05)
        except AssertionError as failed:
            raise AssertionError(f"{failed}; the page's console:\n" + "\n".join(self.console)) from None
        return found[0]

    def screenshot(self, out: Path) -> bytes:
        data = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
        out.write_bytes(data)
        return data


@contextmanager
def browser(tmp_path: Path) -> Iterator[Page]:
    """Headless Chromium with its DevTools on fds 3 (commands in) and 4 (replies out)."""
    binary = chromium()
    commands_read, commands_write = os.pipe()
    replies_read, replies_write = os.pipe()

    def wire() -> None:  # in the child, before exec: the pipes where Chromium expects them
        os.dup2(commands_read, 3)
        os.dup2(replies_write, 4)

    process = subprocess.Popen(
        [
            binary,
            "--headless",
            "--no-sandbox",  # root in CI; the page is our own
            "--disable-gpu",
            "--disable-features=site-per-process,IsolateOrigins,IsolateSandboxedIframes",
            "--remote-debugging-pipe",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "about:blank",
        ],
        preexec_fn=wire,
        pass_fds=(3, 4),  # kept open in the child: `wire` put the pipes there
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "chromium.log").open("wb"),
    )
    os.close(commands_read)
    os.close(replies_write)
    with os.fdopen(commands_write, "wb") as commands, os.fdopen(replies_read, "rb") as replies:
        try:
            yield Page(commands, replies)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
