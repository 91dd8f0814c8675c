"""A test OAuth issuer: its own RSA and EC signing keys, a JWKS served over loopback HTTP (fetches counted), and
tokens minted for any claims, including the forged and broken kinds a resource server must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

RESOURCE_URL = "https://mcp.example.test/mcp"  # the public URL behind a TLS proxy; the audience of its tokens
ALL_SCOPES = "lexey:customer lexey:management lexi lexey:events"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """Signing keys `rsa` (RS256) and `ec` (ES256) are published; `stranger` is not."""

    def __init__(self) -> None:
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
        self.stranger = RSAKey.generate_key(2048, parameters={"kid": "rsa-unpublished"})
        self.published: list[RSAKey | ECKey] = [self.rsa, self.ec]
        self.fetches = 0
        self.url = ""

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) for key in self.published]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": RESOURCE_URL,
            "sub": "user-1",
            "client_id": "test-client",
            "iat": now,
            "exp": now + 300,
            "scope": ALL_SCOPES,
            **overrides,
        }
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, key: RSAKey | ECKey | None = None, **claims: Any) -> str:
        key = key if key is not None else self.rsa
        alg = "ES256" if isinstance(key, ECKey) else "RS256"
        return jwt.encode({"alg": alg, "kid": key.kid}, self.claims(**claims), key, algorithms=[alg])

    def unsigned(self, **claims: Any) -> str:
        """`alg: none`, no signature."""
        header = b64(json.dumps({"alg": "none", "kid": self.rsa.kid}).encode())
        return f"{header}.{b64(json.dumps(self.claims(**claims)).encode())}."

    def hs256_with_public_key(self, **claims: Any) -> str:
        """The classic confusion: HMAC-signed with the RSA *public* key (PEM) as the secret."""
        secret = self.rsa.as_pem(private=False)
        header = b64(json.dumps({"alg": "HS256", "kid": self.rsa.kid}).encode())
        signing_input = f"{header}.{b64(json.dumps(self.claims(**claims)).encode())}"
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(signature)}"

    def tampered(self, **claims: Any) -> str:
        """A valid token whose payload was swapped afterwards (signature kept)."""
        header, _, signature = self.token(scope="lexi").split(".")
        return f"{header}.{b64(json.dumps(self.claims(**claims)).encode())}.{signature}"


@contextmanager
def serve_issuer() -> Iterator[Issuer]:
    """The issuer's JWKS at `{issuer.url}/.well-known/jwks.json` on a free loopback port."""
    issuer = Issuer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/.well-known/jwks.json":
                self.send_error(404)
                return
            issuer.fetches += 1
            body = json.dumps(issuer.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
