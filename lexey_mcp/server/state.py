"""What every tool call reaches through its context: the server's lifespan state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context

from ..client import LexeyClient
from ..request_keys import secrets_for

if TYPE_CHECKING:
    from ..events.feed import EventFeed


@dataclass
class AppState:
    client: LexeyClient
    confirm_changes: bool = False
    feed: EventFeed | None = None  # with the events toolset
    #: The management toolset is exposed: a suite's setup (management instructions) may run.
    management: bool = True


def request_secrets(ctx: ServerRequestContext[AppState, Any]) -> list[str]:
    """Every secret in use for this request: what is redacted from everything the server sends back."""
    return secrets_for(ctx.lifespan_context.client.settings)


def client_of(ctx: Context[AppState]) -> LexeyClient:
    return ctx.request_context.lifespan_context.client
