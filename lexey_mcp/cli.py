"""`lexey-mcp`: serve over stdio (default) or streamable HTTP, run the sandbox alone, or run the demo.

The command line is built from light modules only: `--version`, `--help` and argument errors answer before MCP,
pydantic or an HTTP stack is imported (together ~1 s of start-up, measured with `python -X importtime`;
tests/test_cli.py checks it). So a command imports what it needs once it runs, inside the function that runs it: a
start that serves loads the server (and MCP) there.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import interrupt
from .addresses import bind_address, client_host, is_loopback, url_host
from .cli_parser import SANDBOX_COMMANDS, build_parser, top_level_options_given
from .listeners import PortUnavailable, listen, unavailable_port
from .paths import MCP_PATH, WEBHOOK_PATH

if TYPE_CHECKING:
    from mcp.server import MCPServer

    from .config import Settings
    from .events.feed import EventOptions
    from .observability import LogFormat

__all__ = ["build_parser", "configure_logging", "main"]

logger = logging.getLogger("lexey_mcp")


def configure_logging(level: str, secrets: list[str], log_format: LogFormat = "text") -> None:
    """Everything to stderr, redacted. Done before the SDK's server exists, so its own set-up is a no-op."""
    from .observability import log_formatter  # lazy: observability loads pydantic and MCP (module docstring)

    # When a handler fails (stderr closed by the host, …) logging would print the raw, unredacted record.
    logging.raiseExceptions = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(log_format, secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # DEBUG is ours alone: one line per upstream request (client.py). Third-party DEBUG logs every SSE chunk
    # and every MCP message in full, so they stay at INFO, and httpx2's own line per request is a duplicate.
    root.setLevel(max(logging.INFO, logging.getLevelName(level)))
    logging.getLogger("lexey_mcp").setLevel(level)
    for name in ("httpx2", "httpcore2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if level != "DEBUG":  # one line per session or per HTTP request is noise at INFO
        for name in ("mcp.server.streamable_http_manager", "uvicorn.access"):
            logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (the entry point, `lexey_mcp.__main__`, has set up Ctrl-C and SIGTERM first)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(arguments)  # --version, --help and argument errors end here, with nothing heavy imported
    if args.command is None and args.transport == "stdio":
        # A host waits for this start. Measured cold-start cost: cyclic collections while the SDK and the server are
        # imported and built take ~10 % of it, and nearly all they build lives as long as the process: `_main`
        # freezes it once the server is built, and collects again from then on.
        gc.disable()
    try:
        return _main(parser, args, arguments)
    except (PortUnavailable, BaseExceptionGroup) as exc:  # a listener inside a task group raises it in a group
        unavailable = unavailable_port(exc)
        if unavailable is None:
            raise
        print(f"lexey-mcp: {unavailable}", file=sys.stderr)
        return 2
    finally:
        gc.enable()  # an early return (a refused setting, a busy port) must not leave it off for an in-process caller


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> int:
    if args.command is not None and not _command_options_in_place(parser, args, argv):
        return 2
    if args.command == "sandbox":
        return _run_sandbox(args)
    settings = _load_settings()
    if settings is None:
        return 2
    if args.command == "demo":
        return _run_demo(args, settings)
    configure_logging(settings.log_level, settings.configured_secrets(), settings.log_format)
    if args.command == "test":
        from .qa.command import run_test_command  # lazy: a command's modules load once it runs (module docstring)

        return run_test_command(args, settings)
    return _serve(args, settings)


def _command_options_in_place(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> bool:
    """False (said on stderr) when a server option was given before COMMAND; `--sandbox` before a command that
    takes it is that command's."""
    misplaced = top_level_options_given(parser, argv)
    if misplaced == ["--sandbox"] and args.command in SANDBOX_COMMANDS:
        # `lexey-mcp --sandbox test suite.yaml`: the command takes --sandbox itself, so that is what it means.
        setattr(args, SANDBOX_COMMANDS[args.command], True)
        misplaced = []
    if misplaced:
        print(
            f"lexey-mcp: {', '.join(misplaced)} {'is an option' if len(misplaced) == 1 else 'are options'} of "
            f"the server, not of `{args.command}`: put a command's options after it "
            f"(lexey-mcp {args.command} --help lists them).",
            file=sys.stderr,
        )
    return not misplaced


def _run_sandbox(args: argparse.Namespace) -> int:
    from pydantic import SecretStr  # lazy: a command's modules load once it runs (module docstring)

    from .sandbox import SandboxConfig, serve

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    secret = args.webhook_secret or os.environ.get("LEXEY_WEBHOOK_SECRET") or None
    webhooks = {"webhook_url": args.webhook_url, "webhook_secret": SecretStr(secret) if secret else None}
    config = SandboxConfig(delay=args.delay, **(webhooks if args.webhook_url else {}))
    return serve(args.sandbox_host, args.sandbox_bind_port, config)


def _load_settings() -> Settings | None:
    """The settings, or None when one is refused (each refused setting said on stderr)."""
    from pydantic import ValidationError  # lazy: a command's modules load once it runs (module docstring)

    from .config import Settings, describe_settings_error

    try:
        return Settings()
    except ValidationError as exc:
        for line in describe_settings_error(exc).splitlines():
            print(f"lexey-mcp: {line}", file=sys.stderr)
        return None


def _run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import run_demo  # lazy: a command's modules load once it runs (module docstring)

    level = settings.log_level if args.verbose else "WARNING"
    configure_logging(level, settings.configured_secrets(), settings.log_format)
    return run_demo(settings, delay=args.delay)


def _static_token(settings: Settings) -> str | None:
    """LEXEY_MCP_AUTH_TOKEN, which guards the HTTP transport (stdio has no one to ask for it)."""
    return settings.auth_token.get_secret_value() if settings.auth_token else None


def _oauth(args: argparse.Namespace, settings: Settings) -> bool:
    return args.transport == "http" and settings.oauth_issuer is not None


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    """Check, bind every listener, build the server and serve it over stdio or HTTP until it stops."""
    problem = _serving_problem(args, settings)
    if problem is not None:
        print(f"lexey-mcp: {problem}", file=sys.stderr)
        return 2
    # Every listener the command line names has its port before anything starts or says it serves.
    listeners = _bind_listeners(args)
    # lazy: a command's modules load once it runs (module docstring)
    from .events.feed import state_dir_problem
    from .server import ServerOptions, build_server

    # Checked when events are to be kept: the feed is on, or LEXEY_STATE_DIR was set (a default that cannot be used
    # and is not needed does not stop a host's server).
    keeps_events = settings.webhook_secret is not None or "state_dir" in settings.model_fields_set
    if "events" in args.toolsets and not args.sandbox and keeps_events:
        problem = state_dir_problem(settings)
        if problem is not None:
            print(f"lexey-mcp: {problem}", file=sys.stderr)
            return 2
    token = _static_token(settings)
    oauth = _oauth(args, settings)
    server = build_server(
        settings,
        ServerOptions(
            toolsets=args.toolsets,
            read_only=args.read_only or settings.read_only,
            sandbox=args.sandbox,
            sandbox_delay=args.sandbox_delay,
            sandbox_sockets=listeners.sandbox,
            auth_token=token if args.transport == "http" else None,
            confirm_changes=args.confirm_changes or settings.confirm_changes,
            oauth=oauth,
            request_keys=args.request_keys,
            events=_event_options(args, listeners),
        ),
    )
    if args.transport == "stdio":
        return _serve_stdio(server, settings)
    return _serve_http(server, args, settings, listeners)


def _serving_problem(args: argparse.Namespace, settings: Settings) -> str | None:
    """Why these options and settings cannot serve, or None."""
    if args.transport == "http":
        from .hosting import auth_problem  # lazy: a command's modules load once it runs (module docstring)

        problem = auth_problem(settings)
        if problem is not None:
            return problem
    elif args.request_keys == "required":
        return "--request-keys required needs --transport http (keys come in HTTP headers)."
    unguarded = not _static_token(settings) and not _oauth(args, settings)
    if args.transport == "http" and not is_loopback(args.host) and unguarded:
        return (
            f"refusing to serve HTTP on {args.host} without LEXEY_MCP_AUTH_TOKEN: anyone who can reach "
            "it could use your Lexey keys. Set LEXEY_MCP_AUTH_TOKEN to a long random string (or configure OAuth "
            "with LEXEY_MCP_OAUTH_ISSUER), or bind 127.0.0.1."
        )
    return None


@dataclass
class _Listeners:
    """The sockets the command line asks for, bound before anything starts."""

    http: list[socket.socket]
    #: The HTTP port (the bound one when --port 0).
    port: int
    sandbox: list[socket.socket] | None
    webhook: list[socket.socket] | None


def _bind_listeners(args: argparse.Namespace) -> _Listeners:
    http = (
        listen(bind_address(args.host), args.port, "the HTTP transport", "--port") if args.transport == "http" else []
    )
    return _Listeners(
        http=http,
        port=http[0].getsockname()[1] if http else args.port,
        sandbox=listen("127.0.0.1", args.sandbox_port, "the sandbox", "--sandbox-port") if args.sandbox else None,
        webhook=(
            listen(args.webhook_host, args.webhook_port, "the webhook receiver", "--webhook-port")
            if args.transport == "stdio" and args.webhook_port is not None
            else None
        ),
    )


def _event_options(args: argparse.Namespace, listeners: _Listeners) -> EventOptions:
    """Where webhooks arrive: on the MCP port over HTTP, else on --webhook-port (stdio)."""
    from .events.feed import EventOptions  # lazy: loaded by _serve already, named here for the type

    if args.transport == "http":
        if args.webhook_port is not None:
            logger.warning("--webhook-port is for stdio: over HTTP, webhooks arrive on the MCP port (%s)", WEBHOOK_PATH)
        url = f"http://{client_host(args.host)}:{listeners.port}{WEBHOOK_PATH}"
        return EventOptions(public_url=url, sessions=not args.stateless)
    return EventOptions(
        webhook_host=args.webhook_host,
        webhook_port=args.webhook_port,
        webhook_sockets=tuple(listeners.webhook) if listeners.webhook is not None else None,
    )


def _serve_stdio(server: MCPServer[Any], settings: Settings) -> int:
    from . import stdio_transport  # lazy: a command's modules load once it runs (module docstring)

    gc.freeze()  # start-up's objects out of the collector's sight, its garbage too (~3,000 objects, kept)
    gc.enable()
    if sys.stdin.isatty():
        print(
            "lexey-mcp: waiting for an MCP host on stdin (Ctrl-D quits). `lexey-mcp demo` shows what it does; "
            "`lexey-mcp --help` lists the options.",
            file=sys.stderr,
        )
    interrupt.run(stdio_transport.serve, server, settings.max_line_bytes, settings.max_in_flight)
    return 0


def _serve_http(server: MCPServer[Any], args: argparse.Namespace, settings: Settings, listeners: _Listeners) -> int:
    from . import http_transport  # lazy: uvicorn and the HTTP listener pieces load only when serving HTTP

    oauth = _oauth(args, settings)
    guard = (
        " (LEXEY_MCP_AUTH_TOKEN required)" if _static_token(settings) else " (OAuth tokens required)" if oauth else ""
    )
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=args.stateless,
        json_response=False,
        host=args.host,
        transport_security=http_transport.transport_security(args.host),
        session_idle_timeout=settings.session_idle_minutes * 60,
    )
    if oauth:
        from .oauth import resource_metadata_route  # lazy: joserfc, only with OAuth (tests/test_oauth.py)

        app.router.routes.insert(0, resource_metadata_route(settings))
    logger.info(
        "serving streamable HTTP at http://%s:%d%s%s",
        url_host(args.host),
        listeners.port,
        MCP_PATH,
        guard,
    )
    return http_transport.serve(app, listeners.http, settings)


if __name__ == "__main__":
    sys.exit(main())
