"""The `lexey-mcp` command line's parser: the server's options, a group at a time, and one parser per command.

Light on purpose (argparse and the package's own light modules): `--version`, `--help` and argument errors answer
from here before anything heavy loads (tests/test_cli.py checks it).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TypeAlias

from . import __version__
from .listeners import port_number
from .paths import WEBHOOK_PATH
from .qa.arguments import add_arguments as add_test_arguments
from .sandbox_delay import add_delay_option
from .toolsets import TOOLSETS, Toolset
from .vendor import API

#: The variables holding the upstream keys, in the help's epilog.
_KEY_VARIABLES = [facts.key_variable for facts in API.values()]


def _toolsets(value: str) -> list[Toolset]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in TOOLSETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(TOOLSETS)} (comma-separated)")
    return [n for n in TOOLSETS if n in names]


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's default in its help, in words (no `False`, no Python lists)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if not action.option_strings or default is None or default is False or default == argparse.SUPPRESS:
            return text
        shown = ",".join(default) if isinstance(default, list) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lexey-mcp",
        description="MCP server for Lexey (customer-support agents) and Lexi (LeadLex CRM assistant).",
        epilog=f"Configuration comes from the environment or a .env file: {', '.join(_KEY_VARIABLES)}, "
        "LEXEY_BASE_URL, LEXI_BASE_URL, LEXEY_MCP_AUTH_TOKEN, LEXEY_LOG_LEVEL, and the timeouts and caps listed in "
        "docs/configuration.md (LEXEY_READ_TIMEOUT, LEXEY_STREAM_TIMEOUT, …). Options before a COMMAND are the "
        "server's; a command's own options go after it (lexey-mcp COMMAND --help).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lexey-mcp {__version__}")
    _add_transport_options(parser)
    _add_embedded_sandbox_options(parser)
    _add_tool_options(parser)
    _add_webhook_options(parser)
    # A command's options need dests of their own, not a server option's (see top_level_options_given).
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_sandbox_command(commands)
    _add_demo_command(commands)
    _add_test_command(commands)
    return parser


#: What `add_subparsers` returns: each command adds its parser to it.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_transport_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="how hosts reach the server")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address")
    parser.add_argument("--port", type=port_number, default=8000, help="HTTP port")
    parser.add_argument(
        "--stateless",
        action="store_true",
        help="HTTP without sessions, for replicas behind a load balancer. Legacy clients (protocol 2025-11-25 or "
        "2025-06-18) can cancel a call there only by closing its connection (a notifications/cancelled is not routed, "
        "and the upstream stream runs to its end, at most LEXEY_STREAM_TIMEOUT)",
    )


def _add_embedded_sandbox_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sandbox", action="store_true", help="start the embedded Lexey sandbox and use it")
    add_delay_option(parser, "--sandbox-delay", "with --sandbox: seconds between events")
    parser.add_argument(
        "--sandbox-port",
        type=port_number,
        default=0,
        metavar="PORT",
        help="with --sandbox: its port (0: any free port)",
    )


def _add_tool_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--toolsets",
        type=_toolsets,
        default=list(TOOLSETS),
        metavar="LIST",
        help=f"comma-separated: {','.join(TOOLSETS)}",
    )
    parser.add_argument(
        "--read-only", action="store_true", help="expose only tools that change nothing (or LEXEY_READ_ONLY=1)"
    )
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
        "come before the environment's; 'required' never uses the environment's keys",
    )


def _add_webhook_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--webhook-port",
        type=port_number,
        metavar="P",
        help=f"stdio mode: receive Lexey's webhooks at http://HOST:P{WEBHOOK_PATH} (needs LEXEY_WEBHOOK_SECRET); "
        "over HTTP they arrive on the MCP port",
    )
    parser.add_argument("--webhook-host", default="127.0.0.1", help="with --webhook-port")


def _add_sandbox_command(commands: Commands) -> None:
    sandbox = commands.add_parser(
        "sandbox",
        help="run the Lexey sandbox alone (a real HTTP server)",
        description="Run the Lexey + Lexi sandbox alone, a real HTTP server, until Ctrl-C. It prints the export "
        "lines that point a client (lexey-mcp, or your own) at it.",
        formatter_class=_HelpFormatter,
    )
    sandbox.add_argument("--host", dest="sandbox_host", default="127.0.0.1", metavar="HOST", help="bind address")
    sandbox.add_argument(
        "--port", dest="sandbox_bind_port", type=port_number, default=8765, metavar="PORT", help="port"
    )
    add_delay_option(sandbox)
    sandbox.add_argument(
        "--webhook-url",
        help=f"POST signed conversation.escalated webhooks here, e.g. http://127.0.0.1:8000{WEBHOOK_PATH}",
    )
    sandbox.add_argument(
        "--webhook-secret", help="signs them (default: $LEXEY_WEBHOOK_SECRET, better: arguments show in ps)"
    )


def _add_demo_command(commands: Commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="configure an org, run a scenario that escalates, review analytics (sandbox)",
        description="The vendor's workflow end to end, through this MCP server against the embedded sandbox: "
        "configure an organisation, run a customer scenario that escalates, review the analytics. Needs no keys.",
        formatter_class=_HelpFormatter,
    )
    add_delay_option(demo)
    demo.add_argument("-v", "--verbose", action="store_true", help="show the server's and the sandbox's logs")
    # The demo always runs against the embedded sandbox: asking for it is what the user means, not a mistake.
    demo.add_argument("--sandbox", dest="demo_sandbox", action="store_true", help=argparse.SUPPRESS)


def _add_test_command(commands: Commands) -> None:
    add_test_arguments(
        commands.add_parser(
            "test",
            help="run a QA suite against the support agent (exit 0 all passed)",
            description="Run an agent QA suite (YAML or JSON): its setup through the management agent, then each "
            "case in a fresh customer conversation. Exit 0 when every run passed, 1 when any failed, 2 for an "
            "invalid suite or configuration.",
            formatter_class=_HelpFormatter,
        )
    )


def top_level_options_given(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """The server options (those before COMMAND) given on this command line."""
    unset = object()
    options = {a.dest: a.option_strings[-1] for a in parser._actions if a.option_strings and a.dest != "help"}
    probe = argparse.Namespace(**dict.fromkeys(options, unset))
    parser.parse_args(argv, probe)
    return [flag for dest, flag in options.items() if getattr(probe, dest) is not unset]


#: Commands that take --sandbox themselves (the dest of their option): given before them, it is theirs.
SANDBOX_COMMANDS = {"test": "test_sandbox", "demo": "demo_sandbox"}
