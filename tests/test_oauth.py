"""OAuth 2.1 resource server: tokens minted by a test issuer whose JWKS is served on loopback, checked over
streamable HTTP against `lexey-mcp` running as a subprocess, stateful and stateless."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import SocketAttribute, SocketStream
from joserfc.jwk import RSAKey

from lexey_mcp.hosting import auth_problem, jwks_url_of
from lexey_mcp.oauth import JWKSCache, JWTVerifier
from lexey_mcp.paths import MCP_PATH
from lexey_mcp.sandbox import Sandbox
from lexey_mcp.server import TOOLS
from tests.jsonrpc import initialize
from tests.oauth_issuer import ALL_SCOPES, RESOURCE_URL, Issuer, serve_issuer
from tests.processes import SERVER, clean_env, http_server, mcp_client
from tests.reading import text_of
from tests.streams import settings

pytestmark = pytest.mark.anyio

METADATA_URL = "https://mcp.example.test/.well-known/oauth-protected-resource/mcp"
INITIALIZE = initialize("2025-11-25", client="t")


def rejected_tokens(issuer: Issuer) -> dict[str, str]:
    now = int(time.time())
    return {
        "expired": issuer.token(exp=now - 120),
        "not yet valid": issuer.token(nbf=now + 600),
        "without exp": issuer.token(exp=None),
        "wrong audience": issuer.token(aud="https://other.example.test/mcp"),
        "wrong issuer": issuer.token(iss="https://evil.example.test"),
        "unknown kid": issuer.token(issuer.stranger),
        "alg none": issuer.unsigned(),
        "HS256 signed with the public key": issuer.hs256_with_public_key(),
        "tampered payload": issuer.tampered(scope=ALL_SCOPES),
        "not a JWT": "opaque-token",
    }


async def post_initialize(url: str, token: str | None) -> httpx2.Response:
    headers = {"Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        return await http.post(url, json=INITIALIZE, headers=headers)


async def post_call(url: str, token: str, method: str, params: dict[str, Any]) -> httpx2.Response:
    call = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    headers = {**bearer(token), "Accept": "application/json, text/event-stream", "Mcp-Session-Id": "any"}
    async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        return await http.post(url, json=call, headers=headers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
@pytest.mark.e2e
async def test_tokens_over_streamable_http(sandbox: Sandbox, tmp_path: Path, stateless: bool) -> None:
    with serve_issuer() as issuer:
        env = {"LEXEY_MCP_OAUTH_ISSUER": issuer.url, "LEXEY_MCP_RESOURCE_URL": RESOURCE_URL}
        async with http_server(sandbox, tmp_path, *(["--stateless"] if stateless else []), **env) as server:
            base = server.url.removesuffix(MCP_PATH)
            async with httpx2.AsyncClient(trust_env=False) as http:
                metadata = (await http.get(f"{base}/.well-known/oauth-protected-resource/mcp")).json()
            assert metadata["resource"] == RESOURCE_URL
            assert metadata["authorization_servers"] == [issuer.url]
            assert metadata["scopes_supported"] == ALL_SCOPES.split()

            for name, token in {"no token": None, **rejected_tokens(issuer)}.items():
                response = await post_initialize(server.url, token)
                assert response.status_code == 401, name
                assert f'resource_metadata="{METADATA_URL}"' in response.headers["www-authenticate"], name
            # Within the clock-skew leeway, and signed with either key type.
            assert (await post_initialize(server.url, issuer.token(exp=int(time.time()) - 5))).status_code == 200
            assert (await post_initialize(server.url, issuer.token(issuer.ec))).status_code == 200

            async with mcp_client(server.url, headers=bearer(issuer.token())) as everything:
                names = {t.name for t in (await everything.list_tools()).tools}
                assert names == {spec.fn.__name__ for spec in TOOLS}
                created = await everything.call_tool("create_conversation", {})
                assert not created.is_error, text_of(created)
                assert created.structured_content is not None
                history = f"lexey://conversations/{created.structured_content['conversation_id']}/messages"
                assert (await everything.read_resource(history)).contents  # the scope is there: no step-up

            lexi_token = issuer.token(issuer.ec, scope="lexi")
            async with mcp_client(server.url, "legacy", headers=bearer(lexi_token)) as lexi_only:  # 2025-11-25
                assert [t.name for t in (await lexi_only.list_tools()).tools] == ["lexi_chat"]
                assert (await lexi_only.list_resource_templates()).resource_templates == []
                answered = await lexi_only.call_tool("lexi_chat", {"message": "Who is Jane?"})
                assert not answered.is_error, text_of(answered)
            # A tool or resource outside the token's scopes: 403 naming the scope to step up to, before any session
            # is looked at (a resource read was a JSON-RPC error, which no client steps up on).
            listen = {"notifications": {"resourceSubscriptions": [history, "lexey://escalations"]}}
            calls: list[tuple[str, dict[str, Any], str]] = [
                ("tools/call", {"name": "configure_org", "arguments": {}}, "lexey:management"),
                ("tools/call", {"name": "create_conversation", "arguments": {}}, "lexey:customer"),
                ("resources/read", {"uri": history}, "lexey:customer"),
                ("resources/read", {"uri": "lexey://escalations"}, "lexey:events"),
                ("resources/subscribe", {"uri": "lexey://escalations"}, "lexey:events"),
                ("subscriptions/listen", listen, "lexey:customer lexey:events"),
            ]
            for method, params, needed in calls:
                refused = await post_call(server.url, lexi_token, method, params)
                assert refused.status_code == 403, (method, params)
                scopes = "scopes" if " " in needed else "scope"
                assert refused.headers["www-authenticate"] == (
                    f'Bearer error="insufficient_scope", scope="{needed}", '
                    f'error_description="this call needs the {scopes} {needed}", resource_metadata="{METADATA_URL}"'
                )
                assert refused.json()["scope"] == needed

            async with mcp_client(server.url, headers=bearer(issuer.token(scope=None))) as no_scopes:
                assert (await no_scopes.list_tools()).tools == []
        # The first token fetched the JWKS; the unknown kid fetched it once more (key rotation), never again.
        assert issuer.fetches == 2
    assert [use.path.rsplit("/", 1)[-1] for use in sandbox.key_log] == ["conversations", "messages", "stream"]


async def test_jwks_is_fetched_again_once_for_an_unknown_kid() -> None:
    now = [0.0]
    with serve_issuer() as issuer:
        jwks = JWKSCache(f"{issuer.url}/.well-known/jwks.json", refetch_after=30, clock=lambda: now[0])
        verifier = JWTVerifier(issuer.url, RESOURCE_URL, jwks)
        assert await verifier.verify_token(issuer.token()) is not None
        assert await verifier.verify_token(issuer.token(issuer.ec)) is not None
        assert issuer.fetches == 1  # cached

        issuer.published.append(issuer.stranger)  # the issuer rotates a new key in
        granted = await verifier.verify_token(issuer.token(issuer.stranger, scope="lexi lexey:events"))
        assert granted is not None
        assert granted.scopes == ["lexi", "lexey:events"]
        assert granted.token == "[redacted]"
        assert issuer.fetches == 2

        forger = Issuer()  # its keys reuse our kids: refused on the signature, with no fetch
        assert await verifier.verify_token(issuer.token(forger.rsa)) is None
        assert await verifier.verify_token(issuer.token(forger.ec)) is None
        assert issuer.fetches == 2
        made_up = RSAKey.generate_key(2048, parameters={"kid": "made-up"})
        for _ in range(5):  # an unknown kid right after a refetch: no fetch until `refetch_after` has passed
            assert await verifier.verify_token(issuer.token(made_up)) is None
        assert issuer.fetches == 2
        now[0] += 31
        assert await verifier.verify_token(issuer.token(made_up)) is None
        assert issuer.fetches == 3

        now[0] += 3600  # the cache expires
        assert await verifier.verify_token(issuer.token()) is not None
        assert issuer.fetches == 4


@asynccontextmanager
async def misbehaving_jwks(send_body: Callable[[SocketStream], Awaitable[None]]) -> AsyncIterator[str]:
    """A JWKS URL on loopback whose server answers 200 and then sends its body with `send_body`."""

    async def serve(stream: SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await send_body(stream)

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, serve)
        yield f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}/.well-known/jwks.json"
        group.cancel_scope.cancel()


async def drip(stream: SocketStream) -> None:
    """A byte of JSON whitespace every 50 ms, forever: each read is quick, the whole never ends."""
    while True:
        await stream.send(b"1\r\n \r\n")
        await anyio.sleep(0.05)  # the drip is what this tests


async def flood(stream: SocketStream) -> None:
    """JSON whitespace, 64 KiB at a time, without end."""
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    while True:
        await stream.send(chunk)


@pytest.mark.parametrize("send_body", [drip, flood], ids=["dripping", "endless"])
async def test_a_jwks_fetch_is_bounded_in_time_and_size(send_body: Callable[[SocketStream], Awaitable[None]]) -> None:
    """Verifications wait on the JWKS fetch: an issuer that drips its answer or never stops sending fails the fetch
    (no key, the token refused) within the fetch's time limit instead of holding every request."""
    async with misbehaving_jwks(send_body) as url:
        jwks = JWKSCache(url, fetch_timeout=1.0)
        with anyio.fail_after(10):
            assert await jwks.key("rsa-1") is None


def run_server(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`lexey-mcp` with `args` and the environment `env`, for a start that is refused before it serves."""
    return subprocess.run(
        [*SERVER, *args],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=30,
        check=False,
    )


@pytest.mark.e2e
def test_static_token_and_oauth_together_exit_2_naming_both() -> None:
    env = {
        "LEXEY_MCP_AUTH_TOKEN": "tok_static_long_enough_0123",
        "LEXEY_MCP_OAUTH_ISSUER": "https://issuer.example.test",
    }
    done = run_server("--transport", "http", "--port", "1", **env)
    assert done.returncode == 2
    assert "LEXEY_MCP_AUTH_TOKEN and LEXEY_MCP_OAUTH_ISSUER are both set" in done.stderr
    assert "tok_static" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"oauth_issuer": "https://issuer.example.test"}, "needs LEXEY_MCP_RESOURCE_URL"),
        ({"resource_url": RESOURCE_URL}, "take effect only with LEXEY_MCP_OAUTH_ISSUER"),
        (
            {
                "oauth_issuer": "https://issuer.example.test",
                "oauth_jwks_url": "http://issuer.example.test/jwks.json",
                "resource_url": RESOURCE_URL,
            },
            "LEXEY_MCP_OAUTH_JWKS_URL must be an https:// URL",
        ),
    ],
)
def test_incomplete_oauth_settings_are_refused(values: dict[str, str], message: str) -> None:
    problem = auth_problem(settings(**values))
    assert problem is not None
    assert message in problem


def test_complete_oauth_settings_pass() -> None:
    loopback = {"oauth_issuer": "http://127.0.0.1:9", "resource_url": RESOURCE_URL}
    assert auth_problem(settings(**loopback)) is None  # plain http to the issuer only on loopback
    assert jwks_url_of(settings(**loopback)) == "http://127.0.0.1:9/.well-known/jwks.json"
    assert auth_problem(settings()) is None


@pytest.mark.e2e
def test_request_keys_required_needs_http() -> None:
    done = run_server("--request-keys", "required")
    assert done.returncode == 2
    assert "--request-keys required needs --transport http" in done.stderr


@pytest.mark.e2e
def test_plain_start_does_not_load_joserfc() -> None:
    probe = "import sys, lexey_mcp.cli, lexey_mcp.server; print('joserfc' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.e2e
def test_oauth_allows_a_non_loopback_bind() -> None:
    """With OAuth no static token is needed off loopback: the server goes on to bind (192.0.2.10 is not ours)."""
    env = {"LEXEY_MCP_OAUTH_ISSUER": "https://issuer.example.test", "LEXEY_MCP_RESOURCE_URL": RESOURCE_URL}
    done = subprocess.run(
        [*SERVER, "--transport", "http", "--host", "192.0.2.10", "--port", "8123"],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=30,
        check=False,
    )
    assert done.returncode == 2  # the address it went on to bind is not this machine's: one line (issue 19)
    assert done.stderr == (
        "lexey-mcp: the HTTP transport cannot listen on 192.0.2.10 port 8123: 192.0.2.10 is not an address of this "
        "machine; choose one that is\n"
    )


async def test_a_known_key_never_waits_for_a_slow_refetch() -> None:
    """An unknown kid makes the cache fetch the JWKS again, and that issuer now drips its answer: tokens signed with
    a key already known are verified meanwhile, not after the fetch gives up."""
    issuer = Issuer()
    first = json.dumps(issuer.jwks()).encode()
    fetching = anyio.Event()

    async def serve(stream: SocketStream) -> None:
        async with stream:
            await stream.receive()
            if not fetching.is_set() and issuer.fetches == 0:
                issuer.fetches += 1
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(first)
                await stream.send(head + first)
                return
            fetching.set()
            await stream.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await drip(stream)

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, serve)
        issuer.url = f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}"
        verifier = JWTVerifier(issuer.url, RESOURCE_URL, JWKSCache(f"{issuer.url}/.well-known/jwks.json"))
        assert await verifier.verify_token(issuer.token()) is not None  # the first fetch: keys known
        unknown_done = anyio.Event()

        async def unknown() -> None:
            await verifier.verify_token(issuer.token(issuer.stranger))
            unknown_done.set()

        group.start_soon(unknown)
        with anyio.fail_after(30):
            await fetching.wait()
        known = await verifier.verify_token(issuer.token(issuer.ec))
        assert known is not None
        assert not unknown_done.is_set()  # the dripping fetch is still under way
        with anyio.fail_after(30):
            await unknown_done.wait()  # and it ends, within its own limit
        group.cancel_scope.cancel()
