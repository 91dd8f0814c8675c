"""Hosted mode: one streamable-HTTP endpoint shared by many users.

Each `/mcp` HTTP request may bring its own upstream keys (`X-Lexey-Customer-Key`, `X-Lexey-Management-Key`,
`X-Lexi-Api-Key`) and narrow what it may use (`X-MCP-Toolsets`, `X-MCP-Readonly`); with OAuth, its token's scopes
decide what it sees. `middleware` reads all of that from the HTTP request that carried each MCP message and holds
it in a ContextVar for exactly that message's handling (each concurrent call runs in its own context), so a key
reaches only the upstream calls of its own request. That ContextVar is `request_keys.current`: `request_keys.key_for`,
the one place the client obtains a key, asks the current `Caller` first, and `request_keys.secrets_for` adds its keys
for redaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from mcp.server import MCPServer, ServerRequestContext
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.context import ServerMiddleware
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, INVALID_REQUEST
from pydantic import SecretStr
from starlette.datastructures import Headers

from . import request_keys
from .addresses import is_loopback
from .config import KEY_SPECS, KeyKind, Settings, key_value_problem
from .errors import LexeyConfigError
from .tool_errors import tool_error
from .toolsets import TOOLSETS, Toolset

RequestKeysMode = Literal["optional", "required"]

KEY_HEADERS: dict[KeyKind, str] = {
    "customer": "X-Lexey-Customer-Key",
    "management": "X-Lexey-Management-Key",
    "lexi": "X-Lexi-Api-Key",
}
TOOLSETS_HEADER = "X-MCP-Toolsets"
READONLY_HEADER = "X-MCP-Readonly"

#: The OAuth scope of each toolset (`toolsets.TOOLSETS`). Under OAuth a tool whose toolset has no scope here is
#: refused, never shown.
TOOLSET_SCOPES: dict[str, str] = {name: facts.scope for name, facts in TOOLSETS.items()}
#: The OAuth scopes (advertised in the protected resource metadata).
SCOPES = tuple(TOOLSET_SCOPES.values())
#: Resources by URI prefix (a template's text before its first variable): the toolset they belong to.
RESOURCE_TOOLSETS: dict[str, Toolset] = {
    uri.partition("{")[0]: name for name, facts in TOOLSETS.items() for uri in facts.resources
}

#: The listings filtered per request: method -> (the result's list, each item's name or URI).
_LISTINGS: dict[str, tuple[str, str]] = {
    "tools/list": ("tools", "name"),
    "resources/list": ("resources", "uri"),
    "resources/templates/list": ("resourceTemplates", "uriTemplate"),
}

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def resource_toolset(uri: str) -> Toolset | None:
    """The toolset the resource (or template) `uri` belongs to; None for a URI no toolset serves."""
    return next((t for prefix, t in RESOURCE_TOOLSETS.items() if uri.startswith(prefix)), None)


@dataclass(frozen=True)
class Caller:
    """What the HTTP request carrying the current MCP message brings and allows."""

    keys: Mapping[KeyKind, SecretStr]
    keys_required: bool
    scopes: frozenset[str] | None  # None: no OAuth on this server
    toolsets: frozenset[str] | None  # None: no X-MCP-Toolsets header
    read_only: bool

    def tool_refusal(self, name: str, toolset: str | None, read_only: bool) -> str | None:
        """Why this request may not see or call tool `name` (of `toolset`), or None when it may."""
        if self.scopes is not None:
            scope = TOOLSET_SCOPES.get(toolset or "")
            if scope is None:
                return f"{name} is not offered to OAuth clients."
            if scope not in self.scopes:
                return f"{name} needs the OAuth scope {scope}, which this request's token does not carry."
        if self.toolsets is not None and toolset not in self.toolsets:
            return f"{name} is outside the toolsets this request's {TOOLSETS_HEADER} header allows."
        if self.read_only and not read_only:
            return f"{name} changes things, and this request's {READONLY_HEADER} header allows read-only tools only."
        return None

    def resource_refusal(self, uri: str) -> str | None:
        """Why this request may not see or read the resource (or template) `uri`, or None when it may."""
        toolset = resource_toolset(uri)
        scope = TOOLSET_SCOPES.get(toolset or "")
        if self.scopes is not None and (scope is None or scope not in self.scopes):
            return f"{uri} needs the OAuth scope {scope}, which this request's token does not carry."
        if self.toolsets is not None and toolset not in self.toolsets:
            return f"{uri} is outside the toolsets this request's {TOOLSETS_HEADER} header allows."
        return None

    def key(self, kind: KeyKind) -> SecretStr | None:
        """The key this request brings for `kind`; None to use the environment's (the request sent no such header
        and keys per request are optional). `LexeyConfigError` when the request may not use an upstream key of this
        kind (its token's scopes or its toolsets leave it out: whatever path asks, a tool of another toolset
        included, such as test-suite setup) or brings an unusable one. Never includes the key."""
        header = KEY_HEADERS[kind]
        _, prefix, what = KEY_SPECS[kind]
        scope = TOOLSET_SCOPES[kind]
        if self.scopes is not None and scope not in self.scopes:
            raise LexeyConfigError(
                f"Using {what} needs the OAuth scope {scope}, which this request's token does not carry."
            )
        if self.toolsets is not None and kind not in self.toolsets:  # each key kind is named like its toolset
            raise LexeyConfigError(
                f"Using {what} needs the {kind} toolset, which this request's {TOOLSETS_HEADER} header leaves out."
            )
        key = self.keys.get(kind)
        if key is None:
            if not self.keys_required:
                return None
            raise LexeyConfigError(
                f"This server takes keys per request: send the {header} header with {what} (it starts with {prefix})."
            )
        problem = key_value_problem(kind, key.get_secret_value(), KEY_HEADERS)
        if problem is not None:
            raise LexeyConfigError(problem)
        return key

    def key_hint(self, kind: KeyKind) -> str:
        """Appended to a problem with the environment's key for `kind`: this request could bring its own."""
        return f" Or send this request's key in the {KEY_HEADERS[kind]} header."

    def key_values(self) -> list[str]:
        """The keys this request brought, for redaction."""
        return [key.get_secret_value() for key in self.keys.values()]


@contextmanager
def acting_for(caller: Caller) -> Iterator[None]:
    """Within this block (and the tasks it starts), keys and permissions are `caller`'s."""
    token = request_keys.current.set(caller)
    try:
        yield
    finally:
        request_keys.current.reset(token)


def jwks_url_of(settings: Settings) -> str:
    return settings.oauth_jwks_url or f"{(settings.oauth_issuer or '').rstrip('/')}/.well-known/jwks.json"


def auth_problem(settings: Settings) -> str | None:
    """Why the HTTP authentication settings cannot work together, or None when they can."""
    if settings.oauth_issuer is None:
        if settings.oauth_jwks_url is not None or settings.resource_url is not None:
            return "LEXEY_MCP_OAUTH_JWKS_URL and LEXEY_MCP_RESOURCE_URL take effect only with LEXEY_MCP_OAUTH_ISSUER."
        return None
    if settings.auth_token is not None:
        return (
            "LEXEY_MCP_AUTH_TOKEN and LEXEY_MCP_OAUTH_ISSUER are both set: choose one way to authenticate "
            "(the static token, or OAuth tokens from the issuer) and unset the other."
        )
    if settings.resource_url is None:
        return (
            "LEXEY_MCP_OAUTH_ISSUER needs LEXEY_MCP_RESOURCE_URL: the public URL of this server's /mcp endpoint, "
            "which its tokens name as their audience (e.g. https://mcp.example.com/mcp)."
        )
    jwks = urlsplit(jwks_url_of(settings))
    if jwks.scheme != "https" and not is_loopback(jwks.hostname or ""):
        return "LEXEY_MCP_OAUTH_JWKS_URL must be an https:// URL (plain http only on loopback)."
    return None


def caller_of(
    headers: Headers, user_scopes: Iterable[str] | None, *, keys_required: bool, known_toolsets: Iterable[str]
) -> Caller | str:
    """The caller described by a request's headers and its token's scopes (None: no OAuth), or why its headers are
    unusable. A narrowing header sent more than once (a gateway's and the user's, say) narrows by every copy: the
    toolsets all of them allow, read-only if any says so. A key header sent twice is ambiguous, so refused."""
    keys: dict[KeyKind, SecretStr] = {}
    for kind, header in KEY_HEADERS.items():
        values = headers.getlist(header)
        if len(values) > 1:
            return f"{header} was sent {len(values)} times: send it once."
        if values and values[0]:
            keys[kind] = SecretStr(values[0])
    toolsets: frozenset[str] | None = None
    known = list(known_toolsets)
    for listed in headers.getlist(TOOLSETS_HEADER):
        names = {n.strip() for n in listed.split(",") if n.strip()}
        unknown = sorted(names - set(known))
        if unknown:
            return f"{TOOLSETS_HEADER} names unknown toolsets ({', '.join(unknown)}): choose from {', '.join(known)}."
        toolsets = frozenset(names) if toolsets is None else toolsets & names
    flags = [flag.strip().lower() for flag in headers.getlist(READONLY_HEADER)]
    if any(flag not in _TRUE + _FALSE for flag in flags):
        return f"{READONLY_HEADER} must be true or false."
    scopes = None if user_scopes is None else frozenset(user_scopes)
    return Caller(keys, keys_required, scopes, toolsets, read_only=any(flag in _TRUE for flag in flags))


def middleware(
    server: MCPServer[Any], *, keys_required: bool, oauth: bool, toolset_of: Mapping[str, str]
) -> ServerMiddleware[Any]:
    """Applies each HTTP request's keys, scopes and narrowing headers to the MCP message it carries: tools and
    resources it may not use are left out of listings and refused when called. `toolset_of`: tool name ->
    toolset. Messages without an HTTP request (stdio, in-process) pass untouched."""
    read_only_tools: set[str] | None = None  # from the tools' annotations, on first use
    known_toolsets = sorted(set(toolset_of.values()) | set(RESOURCE_TOOLSETS.values()))

    async def tool_allowed(caller: Caller, name: str) -> str | None:
        nonlocal read_only_tools
        if read_only_tools is None:
            tools = await server.list_tools()
            read_only_tools = {t.name for t in tools if t.annotations and t.annotations.read_only_hint}
        return caller.tool_refusal(name, toolset_of.get(name), name in read_only_tools)

    async def hosted(ctx: ServerRequestContext[Any, Any], call_next: Any) -> Any:
        request = ctx.request
        if request is None:
            return await call_next(ctx)
        user = request.scope.get("user")
        scopes = (user.scopes if isinstance(user, AuthenticatedUser) else []) if oauth else None
        caller = caller_of(request.headers, scopes, keys_required=keys_required, known_toolsets=known_toolsets)
        params = ctx.params or {}
        if isinstance(caller, str):  # malformed or ambiguous headers: nothing may pass unnarrowed or keyed wrongly
            if ctx.method in ("initialize", "server/discover", "ping") or ctx.request_id is None:
                return await call_next(ctx)
            raise MCPError(code=INVALID_REQUEST, message=caller)
        with acting_for(caller):
            if ctx.method == "tools/call" and isinstance(name := params.get("name"), str):
                refusal = await tool_allowed(caller, name)
                if refusal is not None:
                    return tool_error(refusal)
            for uri in resource_uris(ctx.method, params):
                refusal = caller.resource_refusal(uri)
                if refusal is not None:
                    raise MCPError(code=INVALID_PARAMS, message=refusal)
            result = await call_next(ctx)
            if ctx.method in _LISTINGS:  # handed back in wire form (a dict): anything else fails, never unfiltered
                key, field = _LISTINGS[ctx.method]
                kept = []
                for item in result.get(key) or []:
                    named = str(item.get(field))
                    refusal = await tool_allowed(caller, named) if key == "tools" else caller.resource_refusal(named)
                    if refusal is None:
                        kept.append(item)
                result = {**result, key: kept}
            return result

    return hosted


def resource_uris(method: str, params: Mapping[str, Any]) -> list[str]:
    """The resources a message reads or subscribes to (both protocol eras)."""
    if method in ("resources/read", "resources/subscribe"):
        uri = params.get("uri")
        return [uri] if isinstance(uri, str) else []
    if method == "subscriptions/listen":
        notifications = params.get("notifications")
        uris = notifications.get("resourceSubscriptions") if isinstance(notifications, Mapping) else None
        return [u for u in uris if isinstance(u, str)] if isinstance(uris, list) else []
    return []
