"""OAuth 2.1 resource server: bearer JWTs from one issuer, verified against its JWKS (hosted mode).

Imported only when `LEXEY_MCP_OAUTH_ISSUER` is set (joserfc stays off a plain start). A token is accepted when
its signature verifies with an asymmetric algorithm against a key of the issuer's JWKS (fetched asynchronously,
cached, fetched again once when a token names an unknown `kid`, at most every `REFETCH_SECONDS`), and its `iss`,
`aud` (the public URL of `/mcp`), `exp` and `nbf` hold, with `LEEWAY_SECONDS` of clock skew. The `scope` claim
(space-separated) decides which tools the caller sees (`hosting.TOOLSET_SCOPES`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx2
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key
from joserfc.jws import extract_compact
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.routes import create_protected_resource_routes
from mcp.server.auth.settings import AuthSettings
from starlette.routing import Route

from . import __version__
from .config import Settings
from .hosting import SCOPES, jwks_url_of
from .observability.logs import ThrottledLog

logger = logging.getLogger("lexey_mcp.oauth")

#: Asymmetric signatures only: `none` and HS* (which would verify with a *public* key as the secret) never pass.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_SECONDS = 30
REFETCH_SECONDS = 30.0
JWKS_MAX_AGE_SECONDS = 3600.0
FETCH_SECONDS = 5.0
_JWKS_MAX_BYTES = 1024 * 1024
#: At most one "bearer token rejected" line in this many seconds, whatever the reason (the next counts those left out).
REJECTION_LOG_SECONDS = 60.0


class JWKSCache:
    """The issuer's signing keys by `kid`. Fetched on first use and after `max_age`; fetched again for a `kid` it
    does not know (key rotation), but after such a refetch, or a failed fetch, not again for `refetch_after`
    seconds, so tokens with made-up kids cannot make us hammer the issuer. One fetch at a time, each bounded: at
    most `fetch_timeout` seconds and `_JWKS_MAX_BYTES`, no redirects followed; tokens signed with a known key never
    wait for it."""

    def __init__(
        self,
        url: str,
        *,
        refetch_after: float = REFETCH_SECONDS,
        max_age: float = JWKS_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        fetch_timeout: float = FETCH_SECONDS,
    ) -> None:
        self.url = url
        self._fetch_timeout = fetch_timeout
        self._refetch_after = refetch_after
        self._max_age = max_age
        self._clock = clock
        self._keys: dict[str | None, Key] = {}
        self._fetched_at: float | None = None
        self._quiet_until = -math.inf
        self._lock: anyio.Lock | None = None

    async def key(self, kid: str | None) -> Key | None:
        """The signing key named `kid` (for a token without `kid`: the only key, if there is just one). A key already
        known never waits for a fetch another verification started (single flight: one fetch at a time, which
        verifications of unknown kids wait for, bounded by `fetch_timeout`)."""
        if self._lock is None:
            self._lock = anyio.Lock()
        known = self._find(kid)
        if known is not None and (not self._expired(self._clock()) or self._lock.locked()):
            return known
        async with self._lock:
            now = self._clock()
            expired = self._expired(now)
            if (expired or self._find(kid) is None) and now >= self._quiet_until:
                fetched = await self._fetch()
                if fetched:
                    self._fetched_at = now
                if not fetched or not expired:
                    self._quiet_until = now + self._refetch_after
            return self._find(kid)

    def _expired(self, now: float) -> bool:
        return self._fetched_at is None or now - self._fetched_at >= self._max_age

    async def _download(self) -> bytes | str:
        """The JWKS document, or what was wrong with the answer."""
        async with (
            httpx2.AsyncClient(
                timeout=self._fetch_timeout,
                trust_env=False,
                follow_redirects=False,
                headers={"User-Agent": f"lexey-mcp/{__version__}", "Accept": "application/json"},
            ) as http,
            http.stream("GET", self.url) as response,
        ):
            if response.status_code != 200:
                return f"answered HTTP {response.status_code}"
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _JWKS_MAX_BYTES:
                    return f"is larger than {_JWKS_MAX_BYTES} bytes"
            return bytes(body)

    def _find(self, kid: str | None) -> Key | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _fetch(self) -> bool:
        """Replace the keys with the issuer's current ones; False (keys kept) when that fails."""
        # Bounded in time and size as a whole: verifications wait on this fetch, and httpx's timeout is per read
        # (a server dripping a byte at a time, or streaming without end, would otherwise hold them all forever).
        try:
            with anyio.fail_after(self._fetch_timeout):
                body = await self._download()
        except TimeoutError:
            logger.warning("JWKS at %s took over %gs; keeping the keys I had", self.url, self._fetch_timeout)
            return False
        except httpx2.HTTPError as exc:
            logger.warning("could not fetch the JWKS at %s (%s); keeping the keys I had", self.url, type(exc).__name__)
            return False
        if isinstance(body, str):
            logger.warning("JWKS at %s %s; keeping the keys I had", self.url, body)
            return False
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            logger.warning("JWKS at %s is not JSON; keeping the keys I had", self.url)
            return False
        raw_keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(raw_keys, list):
            logger.warning("JWKS at %s has no keys list; keeping the keys I had", self.url)
            return False
        keys: dict[str | None, Key] = {}
        for raw in raw_keys:
            # Symmetric keys and encryption keys never verify a token here.
            if not isinstance(raw, dict) or raw.get("kty") == "oct" or raw.get("use", "sig") != "sig":
                continue
            try:
                key = JWKRegistry.import_key(raw)
            except (JoseError, ValueError, TypeError):
                logger.info("JWKS at %s: skipped a key that cannot be imported (kid %r)", self.url, raw.get("kid"))
                continue
            keys[raw.get("kid") if isinstance(raw.get("kid"), str) else None] = key
        self._keys = keys
        logger.info("JWKS at %s: %d signing keys", self.url, len(keys))
        return True


class JWTVerifier(TokenVerifier):
    """Verifies bearer JWTs for the SDK's bearer-auth middleware; a rejected token is None (a 401)."""

    def __init__(self, issuer: str, audience: str, jwks: JWKSCache) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self._rejections = ThrottledLog(logger, REJECTION_LOG_SECONDS)
        audiences: list[str | int | bool] = [audience.rstrip("/"), audience.rstrip("/") + "/"]
        self._claims = jwt.JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "values": audiences},
            exp={"essential": True},
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        verdict = await self._verify(token)
        if isinstance(verdict, str):  # anyone can send tokens: a line a minute at most, counting the rest
            self._rejections.log(logging.INFO, "bearer token rejected: %s", verdict)
            return None
        return verdict

    async def _verify(self, token: str) -> AccessToken | str:
        """The token's grant, or why it is rejected (never quoting the token)."""
        try:
            header = extract_compact(token.encode()).headers()
        except (JoseError, ValueError, TypeError):
            return "not a signed JWT"
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            return f"algorithm {str(alg)[:20]!r} is not accepted (asymmetric algorithms only)"
        if kid is not None and not isinstance(kid, str):
            return "its kid is not a string"
        key = await self.jwks.key(kid)
        if key is None:
            return "no key in the issuer's JWKS matches its kid"
        if key.alg is not None and key.alg != alg:
            return f"its algorithm {alg} is not the one its key is for"
        try:
            claims = jwt.decode(token, key, algorithms=[alg]).claims
            self._claims.validate(claims)
        except JoseError as exc:
            return exc.description or exc.error
        except (ValueError, TypeError):
            return "malformed"
        scope = claims.get("scope")
        subject = claims.get("sub")
        client = next((claims[c] for c in ("client_id", "azp", "sub") if isinstance(claims.get(c), str)), "unknown")
        return AccessToken(
            token="[redacted]",  # noqa: S106 - the token itself stays out of the request state and reprs
            client_id=client,
            scopes=scope.split() if isinstance(scope, str) else [],
            expires_at=int(claims["exp"]) + LEEWAY_SECONDS,  # the SDK checks it again, without leeway
            resource=self.audience,
            subject=subject if isinstance(subject, str) else None,
            claims={"iss": self.issuer},
        )


def _issuer_and_audience(settings: Settings) -> tuple[str, str]:
    if settings.oauth_issuer is None or settings.resource_url is None:
        raise ValueError("OAuth needs LEXEY_MCP_OAUTH_ISSUER and LEXEY_MCP_RESOURCE_URL")
    return settings.oauth_issuer, settings.resource_url


def _auth_settings(settings: Settings) -> AuthSettings:
    issuer, audience = _issuer_and_audience(settings)
    return AuthSettings.model_validate(
        {
            "issuer_url": issuer,
            "resource_server_url": audience,
            "validate_token_resource": False,  # JWTVerifier checks `aud` itself
        }
    )


def server_auth(settings: Settings) -> dict[str, Any]:
    """`MCPServer` keyword arguments for OAuth: the verifier and the SDK's resource-server settings (its 401s
    carry `WWW-Authenticate: Bearer … resource_metadata="…"`)."""
    issuer, audience = _issuer_and_audience(settings)
    verifier = JWTVerifier(issuer, audience, JWKSCache(jwks_url_of(settings)))
    return {"token_verifier": verifier, "auth": _auth_settings(settings)}


def resource_metadata_route(settings: Settings) -> Route:
    """The protected resource metadata (RFC 9728) with our scopes listed. The SDK serves it too, but lists only
    `required_scopes` (and requiring ours would refuse every token lacking one): put this route first."""
    auth = _auth_settings(settings)
    assert auth.resource_server_url is not None
    routes = create_protected_resource_routes(
        auth.resource_server_url, [auth.issuer_url], scopes_supported=list(SCOPES), resource_name="lexey-mcp"
    )
    return routes[0]
