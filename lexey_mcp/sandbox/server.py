"""Running the sandbox: an in-process uvicorn server as an async context manager, and a blocking CLI runner."""

from __future__ import annotations

import logging
import shlex
import socket
from collections.abc import Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import NoReturn, Self

import anyio
from pydantic import AliasChoices

from .. import interrupt
from ..addresses import client_host, is_loopback
from ..config import Settings
from ..listeners import listen
from ..serving import serving, uvicorn_server
from ..vendor import API
from .app import CHAT_PREFIX, LEXI_PREFIX, SandboxApp
from .config import SandboxConfig
from .faults import Fault
from .store import CloseReason, KeyUse, RequestRecord, SandboxStats, Store
from .webhooks import WebhookSender

logger = logging.getLogger("lexey_mcp.sandbox")

CUSTOMER_KEY = "lxc_sandbox_customer"
MANAGEMENT_KEY = "lxm_sandbox_management"
LEXI_KEY = "wbk_sandbox_lexi"
SHUTDOWN_GRACE = 0.5


def client_env(
    url: str, *, customer_key: str = CUSTOMER_KEY, management_key: str = MANAGEMENT_KEY, lexi_key: str = LEXI_KEY
) -> dict[str, str]:
    """Environment variables that point a lexey-mcp client at a sandbox serving at `url` (e.g. one started with
    `lexey-mcp sandbox` in another process)."""
    return {
        "LEXEY_BASE_URL": f"{url}/api/v1",
        "LEXI_BASE_URL": f"{url}/functions/v1/api-gateway",
        API["customer"].key_variable: customer_key,
        API["management"].key_variable: management_key,
        API["lexi"].key_variable: lexi_key,
    }


def settings_for(env: Mapping[str, str], base: Settings | None = None) -> Settings:
    """`base` with the variables of `env` (from `client_env`) applied; without `base`, the settings a client whose
    environment also holds `env` would have."""
    applied = Settings.model_validate(dict(env))  # the variables are the fields' aliases
    given = {
        name
        for name, field in Settings.model_fields.items()
        if isinstance(field.validation_alias, AliasChoices) and set(field.validation_alias.choices) & set(env)
    }
    return (base if base is not None else Settings()).model_copy(
        update={name: getattr(applied, name) for name in given}
    )


class Sandbox:
    """An embedded, deterministic Lexey + Lexi server on a real socket.

    `async with Sandbox(SandboxConfig(delay=0), port=0) as sb:` starts uvicorn in a task (asyncio event loop
    only, as uvicorn requires) and stops it on exit, force-closing streams still open. The server's task group
    lives inside the `async with`, so use it as a context manager (anyio cancel scopes must nest).
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sockets: list[socket.socket] | None = None,
    ) -> None:
        self.config = config if config is not None else SandboxConfig()
        self._sockets = sockets  # bound by the caller (`listeners.listen`), in place of host and port
        self.host = sockets[0].getsockname()[0] if sockets else host
        self.port = sockets[0].getsockname()[1] if sockets else port
        self.store = Store(self.config)
        secret = self.config.webhook_secret.get_secret_value() if self.config.webhook_secret else None
        url = self.config.webhook_url
        self.webhooks = WebhookSender(url, secret) if url else None
        self._app = SandboxApp(self.store, self.webhooks).asgi()
        self._stack: AsyncExitStack | None = None

    @property
    def url(self) -> str:
        if self.port == 0:
            raise RuntimeError("the sandbox has no port yet: enter `async with` first")
        return f"http://{client_host(self.host)}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + CHAT_PREFIX

    @property
    def lexi_base_url(self) -> str:
        return self.url + LEXI_PREFIX

    def settings(self, base: Settings | None = None) -> Settings:
        """`base` pointed at this sandbox, with keys it accepts (see `settings_for`)."""
        return settings_for(self.env(), base)

    def env(self) -> dict[str, str]:
        """Environment variables that point a lexey-mcp client at this sandbox."""
        return client_env(
            self.url,
            customer_key=self._key(API["customer"].key_prefix, CUSTOMER_KEY),
            management_key=self._key(API["management"].key_prefix, MANAGEMENT_KEY),
            lexi_key=self._key(API["lexi"].key_prefix, LEXI_KEY),
        )

    def _key(self, prefix: str, default: str) -> str:
        keys = self.config.keys
        if keys is None or default in keys:
            return default
        refused = self.config.keys_without_lexi_permission
        return next((k for k in sorted(keys) if k.startswith(prefix) and k not in refused), default)

    # faults and observability
    def inject(self, fault: Fault) -> None:
        """Queue a fault for the next matching stream request(s)."""
        self.store.faults.push(fault)

    def clear_faults(self) -> int:
        return self.store.faults.clear()

    @property
    def stats(self) -> SandboxStats:
        return self.store.stats

    @property
    def last_headers(self) -> dict[str, dict[str, str]]:
        """The last request's headers (lower-case names) per API: "customer", "management", "lexi"."""
        return self.store.last_headers

    @property
    def requests_log(self) -> list[RequestRecord]:
        """The latest requests (at most HISTORY_LIMIT), oldest first."""
        return list(self.store.requests_log)

    @property
    def key_log(self) -> list[KeyUse]:
        """Which key each API request carried, as `key_fingerprint(key)`, oldest first (the last 10,000)."""
        return list(self.store.key_log)

    async def wait_for_stream_closed(self, timeout: float = 5.0) -> CloseReason:  # noqa: ASYNC109
        """Wait until an open stream closes; return "completed", "dropped", "disconnected" or "cancelled".

        With no stream open, returns at once the reason the most recent stream closed; raises TimeoutError.
        """
        return await self.store.wait_for_stream_closed(timeout)

    async def wait_for_open_streams(self, count: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until at least `count` streams are open at once; raises TimeoutError."""
        await self.store.wait_for_open_streams(count, timeout)

    # lifecycle
    async def _start(self) -> None:
        if self._stack is not None:
            raise RuntimeError("the sandbox is already running")
        if not is_loopback(self.host):
            logger.warning("sandbox bound to %s: anyone who can reach it can use it (it has no real auth)", self.host)
        sockets, self._sockets = self._sockets or listen(self.host, self.port, "the sandbox"), None
        self.port = sockets[0].getsockname()[1]
        server = uvicorn_server(
            self._app,
            grace=SHUTDOWN_GRACE,
            before_stop=self.store.cancel_streams,
            proxy_headers=False,
            server_header=False,
            date_header=False,
        )
        stack = AsyncExitStack()
        try:
            if self.webhooks is not None:
                await stack.enter_async_context(self.webhooks)
            await stack.enter_async_context(serving(server, sockets, "the sandbox"))
        except BaseException:
            for sock in sockets:
                sock.close()
            await stack.aclose()
            raise
        self._stack = stack
        logger.info("sandbox listening on %s", self.url)

    async def _stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()


def banner(sandbox: Sandbox) -> str:
    """The lines `serve` prints: exports for a client, and a curl to try."""
    lines = [f"# Lexey sandbox running at {sandbox.url} (Ctrl-C to stop). Point a client at it with:"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in sandbox.env().items()]
    lines += [
        "# try:",
        '# curl -X POST "$LEXEY_BASE_URL/customer/conversations" -H "Authorization: Bearer $LEXEY_CUSTOMER_KEY"',
    ]
    return "\n".join(lines)


async def _serve(sockets: list[socket.socket], config: SandboxConfig) -> None:
    async with Sandbox(config, sockets=sockets) as sandbox:
        print(banner(sandbox), flush=True)
        await anyio.sleep_forever()


def serve(host: str = "127.0.0.1", port: int = 8765, config: SandboxConfig | None = None) -> NoReturn:
    """Run a sandbox until Ctrl-C (or SIGTERM), after printing `export` lines that point a client at it; then exit
    with the status a shell expects: 128 + the signal's number (130 for Ctrl-C)."""
    sockets = listen(host, port, "the sandbox", "--port")  # before the banner, which says it serves
    interrupt.run(_serve, sockets, config if config is not None else SandboxConfig())
    raise AssertionError("the sandbox serves until a signal stops it")
