"""`lexey-mcp`: serve over stdio (default) or streamable HTTP, run the sandbox alone, or run the demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from pydantic import SecretStr, ValidationError

from . import __version__
from .config import Settings
from .hosting import auth_problem, request_secrets
from .hosting import is_loopback as _is_loopback
from .redaction import redact
from .server import TOOLSETS, Toolset

logger = logging.getLogger("lexey_mcp")


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then removes secrets from the whole line, traceback included: the configured ones and the
    keys the HTTP request being served brought."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), [*self._secrets, *request_secrets()])


def configure_logging(level: str, secrets: list[str]) -> None:
    """Everything to stderr, redacted. Done before the SDK's server exists, so its own set-up is a no-op."""
    # When a handler fails (stderr closed by the host, …) logging would print the raw, unredacted record.
    logging.raiseExceptions = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if level != "DEBUG":  # one line per upstream request is noise at INFO
        for name in ("httpx2", "httpcore2", "mcp.server.streamable_http_manager", "uvicorn.access"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _toolsets(value: str) -> list[Toolset]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in TOOLSETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(TOOLSETS)} (comma-separated)")
    return [n for n in TOOLSETS if n in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lexey-mcp",
        description="MCP server for Lexey (customer-support agents) and Lexi (LeadLex CRM assistant).",
        epilog="Configuration comes from the environment or a .env file: LEXEY_CUSTOMER_KEY, LEXEY_MANAGEMENT_KEY, "
        "LEXI_API_KEY, LEXEY_BASE_URL, LEXI_BASE_URL, LEXEY_MCP_AUTH_TOKEN, LEXEY_LOG_LEVEL, and the timeouts and "
        "caps listed in the README (LEXEY_READ_TIMEOUT, LEXEY_STREAM_TIMEOUT, …).",
    )
    parser.add_argument("--version", action="version", version=f"lexey-mcp {__version__}")
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="default: stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument(
        "--stateless",
        action="store_true",
        help="HTTP without sessions, for replicas behind a load balancer. Clients on protocol 2025-11-25 cannot "
        "cancel calls there (a cancelled call's upstream stream runs to its end, at most LEXEY_STREAM_TIMEOUT)",
    )
    parser.add_argument("--sandbox", action="store_true", help="start the embedded Lexey sandbox and use it")
    parser.add_argument(
        "--sandbox-delay",
        type=float,
        default=0.02,
        metavar="SECONDS",
        help="with --sandbox: seconds between streamed events (default 0.02)",
    )
    parser.add_argument(
        "--toolsets",
        type=_toolsets,
        default=list(TOOLSETS),
        metavar="LIST",
        help="comma-separated: customer,management,lexi,events (default: all)",
    )
    parser.add_argument("--read-only", action="store_true", help="expose only tools that change nothing")
    parser.add_argument(
        "--confirm-changes",
        action="store_true",
        help="ask the user (MCP elicitation) before configure_org sends an instruction (or LEXEY_CONFIRM_CHANGES=1)",
    )
    parser.add_argument(
        "--request-keys",
        choices=["optional", "required"],
        default="optional",
        help="HTTP: upstream keys sent per request (X-Lexey-Customer-Key, X-Lexey-Management-Key, X-Lexi-Api-Key) "
        "come before the environment's; 'required' never uses the environment's keys (default: optional)",
    )
    parser.add_argument(
        "--webhook-port",
        type=int,
        metavar="P",
        help="stdio mode: receive Lexey's webhooks at http://HOST:P/webhooks/lexey (needs LEXEY_WEBHOOK_SECRET); "
        "over HTTP they arrive on the MCP port",
    )
    parser.add_argument("--webhook-host", default="127.0.0.1", help="with --webhook-port (default 127.0.0.1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sandbox = sub.add_parser("sandbox", help="run the Lexey sandbox alone (a real HTTP server)")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8765)
    sandbox.add_argument("--delay", type=float, default=0.02, help="seconds between streamed events")
    sandbox.add_argument(
        "--webhook-url",
        help="POST signed conversation.escalated webhooks here, e.g. http://127.0.0.1:8000/webhooks/lexey",
    )
    sandbox.add_argument(
        "--webhook-secret", help="signs them (default: $LEXEY_WEBHOOK_SECRET, better: arguments show in ps)"
    )
    sub.add_parser("demo", help="configure an org, run a scenario that escalates, review analytics (sandbox)")
    from .qa.arguments import add_arguments as add_test_arguments

    add_test_arguments(sub.add_parser("test", help="run a QA suite against the support agent (exit 0 all passed)"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sandbox":
        from .sandbox import SandboxConfig, serve

        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        secret = args.webhook_secret or os.environ.get("LEXEY_WEBHOOK_SECRET") or None
        webhooks = {"webhook_url": args.webhook_url, "webhook_secret": SecretStr(secret) if secret else None}
        serve(args.host, args.port, SandboxConfig(delay=args.delay, **(webhooks if args.webhook_url else {})))
        return 0
    try:
        settings = Settings()
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]).upper() for e in exc.errors())
        print(f"lexey-mcp: invalid configuration ({fields}):\n{redact(str(exc))}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.secrets())
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(settings)
    if args.command == "test":
        from .qa.command import run_test_command

        return run_test_command(args, settings)
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    oauth = args.transport == "http" and settings.oauth_issuer is not None
    if args.transport == "http":
        problem = auth_problem(settings)
        if problem is not None:
            print(f"lexey-mcp: {problem}", file=sys.stderr)
            return 2
    elif args.request_keys == "required":
        print("lexey-mcp: --request-keys required needs --transport http (keys come in HTTP headers).", file=sys.stderr)
        return 2
    if args.transport == "http" and not _is_loopback(args.host) and not token and not oauth:
        print(
            f"lexey-mcp: refusing to serve HTTP on {args.host} without LEXEY_MCP_AUTH_TOKEN: anyone who can reach "
            "it could use your Lexey keys. Set LEXEY_MCP_AUTH_TOKEN to a long random string (or configure OAuth "
            "with LEXEY_MCP_OAUTH_ISSUER), or bind 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    from .events.feed import EventOptions
    from .server import build_server

    if args.transport == "http":
        if args.webhook_port is not None:
            logger.warning("--webhook-port is for stdio: over HTTP, webhooks arrive on the MCP port (/webhooks/lexey)")
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host  # noqa: S104 - naming, not binding
        url = f"http://{f'[{host}]' if ':' in host else host}:{args.port}/webhooks/lexey"
        events = EventOptions(public_url=url, sessions=not args.stateless)
    else:
        events = EventOptions(webhook_host=args.webhook_host, webhook_port=args.webhook_port)
    server = build_server(
        settings,
        toolsets=args.toolsets,
        read_only=args.read_only,
        sandbox=args.sandbox,
        sandbox_delay=args.sandbox_delay,
        auth_token=token if args.transport == "http" else None,
        confirm_changes=args.confirm_changes or settings.confirm_changes,
        oauth=oauth,
        request_keys=args.request_keys,
        events=events,
    )
    if args.transport == "stdio":
        server.run()
        return 0
    import uvicorn

    app = server.streamable_http_app(
        streamable_http_path="/mcp", stateless_http=args.stateless, json_response=False, host=args.host
    )
    if oauth:
        from .oauth import resource_metadata_route

        app.router.routes.insert(0, resource_metadata_route(settings))
    logger.info(
        "serving streamable HTTP at http://%s:%d/mcp%s",
        args.host,
        args.port,
        " (LEXEY_MCP_AUTH_TOKEN required)" if token else " (OAuth tokens required)" if oauth else "",
    )
    uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_config=None, lifespan="on")).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
