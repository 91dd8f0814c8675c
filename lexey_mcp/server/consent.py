"""Asking the user before the organisation changes (--confirm-changes): MCP elicitation, in both protocol eras,
resolved before the tool body runs (`Annotated[ElicitationResult[Confirmation], Resolve(...)]`)."""

from __future__ import annotations

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit
from mcp.types import CallToolResult
from pydantic import BaseModel, Field, StrictBool

from ..errors import LexeyError
from ..redaction import redact
from ..tool_errors import tool_error
from .state import AppState, request_secrets


class Confirmation(BaseModel):
    """What the user is asked before configure_org sends an instruction."""

    # Strict: only a true answer sends ("true" or 1 from a careless client is not a yes).
    send: StrictBool = Field(description="Send this instruction to Lexey's management agent?")


class _CannotAsk(Confirmation):
    """Confirmation is required and this client cannot be asked: never sent."""

    why: str


def _ask(question: str, ctx: Context[AppState]) -> Confirmation | Elicit[Confirmation]:
    """Ask the user before the organisation is changed (MCP elicitation, both protocol eras)."""
    capabilities = ctx.client_capabilities
    if capabilities is None:  # a 2025 client on --stateless HTTP: no session, no way to ask in the middle of a call
        return _CannotAsk(send=False, why="a 2025-era client cannot be asked in the middle of a call over --stateless")
    elicitation = capabilities.elicitation
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return _CannotAsk(send=False, why="it declared no form elicitation capability")
    # A request to the client, not a result: the outgoing choke point never sees it (legacy) or must not touch it.
    return Elicit(redact(question, request_secrets(ctx.request_context)), Confirmation)


def confirm_instruction(instruction: str, ctx: Context[AppState]) -> Confirmation | Elicit[Confirmation]:
    """With --confirm-changes, ask the user before an instruction is sent."""
    if not ctx.request_context.lifespan_context.confirm_changes:
        return Confirmation(send=True)
    return _ask(
        "Send this instruction to Lexey's management agent? It changes the organisation's setup.\n\n" + instruction, ctx
    )


def confirm_setup(suite: str, ctx: Context[AppState]) -> Confirmation | Elicit[Confirmation]:
    """With --confirm-changes, ask the user before a suite's setup instructions are sent."""
    if not ctx.request_context.lifespan_context.confirm_changes:
        return Confirmation(send=True)
    from ..qa.parsing import parse_suite  # lazy: the QA package (and YAML) cost cold start; see tools/qa.py

    try:
        setup = parse_suite(suite, "suite").setup
    except LexeyError:
        return Confirmation(send=True)  # nothing will be sent: the tool answers what is wrong with the suite
    if not setup:
        return Confirmation(send=True)
    steps = "\n".join(f"{i}. {step.say}" for i, step in enumerate(setup, 1))
    return _ask(
        "Run this test suite? Its setup first sends these instructions to Lexey's management agent, changing the "
        "organisation's setup:\n\n" + steps,
        ctx,
    )


def unconfirmed(confirmation: ElicitationResult[Confirmation], what: str) -> CallToolResult | None:
    """None when sending `what` is confirmed (or needs no confirmation), else the tool error saying why not."""
    if not isinstance(confirmation, AcceptedElicitation):
        answered = "declined" if confirmation.action == "decline" else "cancelled"
        return tool_error(f"Nothing was sent: the user {answered} the confirmation of {what}.")
    if isinstance(confirmation.data, _CannotAsk):
        return tool_error(
            "Nothing was sent: this server asks the user to confirm every change to the organisation "
            f"(--confirm-changes), and this client cannot ask ({confirmation.data.why}). "
            "Use a client that supports elicitation, or run the server without --confirm-changes."
        )
    if not confirmation.data.send:
        return tool_error(f"Nothing was sent: the user answered no to sending {what}.")
    return None
