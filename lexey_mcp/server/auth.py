"""Who may call over HTTP: a static bearer token (--auth-token) or OAuth tokens (`oauth.py`), and the key that seals
elicitation state across replicas."""

from __future__ import annotations

import hmac
from typing import Any

from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.request_state import RequestStateSecurity

from ..config import Settings


class StaticTokenVerifier(TokenVerifier):
    """Accepts exactly one bearer token, compared in constant time."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode(), self._token):
            # The placeholder keeps the real token out of AccessToken's repr and the request state.
            return AccessToken(token="[redacted]", client_id="lexey-mcp-client", scopes=[])  # noqa: S106
        return None


def auth_options(settings: Settings, *, oauth: bool, auth_token: str | None) -> dict[str, Any]:
    """The `MCPServer` keywords for this server's authentication and request-state sealing."""
    options: dict[str, Any] = {}
    if oauth:
        from ..oauth import server_auth  # lazy: joserfc only when OAuth is configured

        options = server_auth(settings)
    elif auth_token:
        options = {
            "token_verifier": StaticTokenVerifier(auth_token),
            "auth": AuthSettings(issuer_url="http://localhost", resource_server_url=None),
        }
    if settings.state_key is not None:
        # Replicas sharing the key accept each other's sealed elicitation state (a confirmation answered elsewhere).
        options["request_state_security"] = RequestStateSecurity(keys=[settings.state_key.get_secret_value()])
    return options
