"""OAuth scope step-up: a tool call, or a read of (or subscription to) a resource, that needs a scope the request's
token does not carry is answered HTTP 403 with
`WWW-Authenticate: Bearer error="insufficient_scope", scope="<needed>", resource_metadata="…"` (the 2025-11-25
authorization spec), before the MCP layer sees it, so a client re-authorises for that scope instead of reading a
tool error or a JSON-RPC error. `hosting.middleware` still refuses such a message wherever no HTTP request carries it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.types import Scope, Send

from .hosting import TOOLSET_SCOPES, resource_toolset, resource_uris


def missing_scope(scope: Scope, message: object, toolset_of: Mapping[str, str]) -> str | None:
    """The OAuth scopes (space-separated) the JSON-RPC `message` needs and the request's token lacks: a tool call's
    toolset's, or those of the resources it reads or subscribes to. None when nothing is missing (or no scope would
    help: a tool or resource of no toolset with a scope is refused by `hosting`, whatever the token)."""
    user = scope.get("user")
    if not isinstance(user, AuthenticatedUser) or not isinstance(message, dict):
        return None
    method, params = message.get("method"), message.get("params")
    if not isinstance(method, str) or not isinstance(params, dict):
        return None
    if method == "tools/call":
        name = params.get("name")
        toolsets = [toolset_of.get(name) if isinstance(name, str) else None]
    else:
        toolsets = [resource_toolset(uri) for uri in resource_uris(method, params)]
    needed = {TOOLSET_SCOPES[t] for t in toolsets if t in TOOLSET_SCOPES} - set(user.scopes)
    return " ".join(sorted(needed)) or None


async def refuse(send: Send, needed: str, resource_metadata: str | None) -> None:
    """The 403 that asks the client to step up to `needed` (one scope or several, space-separated)."""
    description = f"this call needs the scope{'s' if ' ' in needed else ''} {needed}"
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
