"""`lexey-mcp`: serve over stdio (default) or streamable HTTP, run the sandbox alone, or run the demo."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from . import __version__
from .config import Settings
from .observability import LogFormat, RedactingFormatter, log_formatter
from .redaction import redact
from .server import TOOLSETS, Toolset

__all__ = ["RedactingFormatter", "configure_logging", "main"]

logger = logging.getLogger("lexey_mcp")


def configure_logging(level: str, secrets: list[str], log_format: LogFormat = "text") -> None:
    """Everything to stderr, redacted. Done before the SDK's server exists, so its own set-up is a no-op."""
    # When a handler fails (stderr closed by the host, …) logging would print the raw, unredacted record.
    logging.raiseExceptions = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(log_format, secrets))
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
        help="comma-separated: customer,management,lexi (default: all)",
    )
    parser.add_argument("--read-only", action="store_true", help="expose only tools that change nothing")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sandbox = sub.add_parser("sandbox", help="run the Lexey sandbox alone (a real HTTP server)")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8765)
    sandbox.add_argument("--delay", type=float, default=0.02, help="seconds between streamed events")
    sub.add_parser("demo", help="configure an org, run a scenario that escalates, review analytics (sandbox)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sandbox":
        from .sandbox import SandboxConfig, serve

        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        serve(args.host, args.port, SandboxConfig(delay=args.delay))
        return 0
    try:
        settings = Settings()
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]).upper() for e in exc.errors())
        print(f"lexey-mcp: invalid configuration ({fields}):\n{redact(str(exc))}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.secrets(), settings.log_format)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(settings)
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    if args.transport == "http" and not _is_loopback(args.host) and not token:
        print(
            f"lexey-mcp: refusing to serve HTTP on {args.host} without LEXEY_MCP_AUTH_TOKEN: anyone who can reach "
            "it could use your Lexey keys. Set LEXEY_MCP_AUTH_TOKEN to a long random string, or bind 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    from .server import build_server

    server = build_server(
        settings,
        toolsets=args.toolsets,
        read_only=args.read_only,
        sandbox=args.sandbox,
        sandbox_delay=args.sandbox_delay,
        auth_token=token if args.transport == "http" else None,
    )
    if args.transport == "stdio":
        server.run()
        return 0
    import uvicorn

    app = server.streamable_http_app(
        streamable_http_path="/mcp", stateless_http=args.stateless, json_response=False, host=args.host
    )
    logger.info(
        "serving streamable HTTP at http://%s:%d/mcp%s",
        args.host,
        args.port,
        " (LEXEY_MCP_AUTH_TOKEN required)" if token else "",
    )
    uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_config=None, lifespan="on")).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
