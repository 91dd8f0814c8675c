"""OAuth scope step-up: a tool call that needs a scope the request's token does not carry is answered HTTP 403 with
`WWW-Authenticate: Bearer error="insufficient_scope", scope="<needed>", resource_metadata="…"` (the 2025-11-25
authorization spec), before the MCP layer sees it, so a client re-authorises for that scope instead of reading a
tool error. `hosting.middleware` still refuses such a call (as a tool error) wherever no HTTP request carries it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.types import Scope, Send

from .hosting import TOOLSET_SCOPES


def missing_scope(scope: Scope, message: object, toolset_of: Mapping[str, str]) -> str | None:
    """The OAuth scope the JSON-RPC `message` needs and the request's token lacks; None when nothing is missing (or
    no scope would help: a tool of a toolset with no scope is refused by `hosting`, whatever the token)."""
    user = scope.get("user")
    if not isinstance(user, AuthenticatedUser) or not isinstance(message, dict):
        return None
    if message.get("method") != "tools/call":
        return None
    params = message.get("params")
    name = params.get("name") if isinstance(params, dict) else None
    needed = TOOLSET_SCOPES.get(toolset_of.get(name, "")) if isinstance(name, str) else None
    if needed is None or needed in user.scopes:
        return None
    return needed


async def refuse(send: Send, needed: str, resource_metadata: str | None) -> None:
    """The 403 that asks the client to step up to `needed`."""
    description = f"this call needs the scope {needed}"
    parts = ['error="insufficient_scope"', f'scope="{needed}"', f'error_description="{description}"']
    if resource_metadata is not None:
        parts.append(f'resource_metadata="{resource_metadata}"')
    body = json.dumps({"error": "insufficient_scope", "error_description": description, "scope": needed}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", ("Bearer " + ", ".join(parts)).encode()),
    ]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})
