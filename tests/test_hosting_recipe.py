"""docs/hosting.md "Hosting for a team", run as written: `examples/hosting/lexey-mcp.nginx.conf` terminating TLS (with a
self-signed certificate) in front of two stateless replicas with `--request-keys required` and OAuth; two people
connect through it with their own tokens and keys. And the client configurations shown are the example files."""

from __future__ import annotations

import datetime
import functools
import ipaddress
import json
import re
import signal
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import anyio.to_thread
import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lexey_mcp.hosting import SCOPES
from lexey_mcp.paths import HEALTH_PATH, MCP_PATH
from lexey_mcp.sandbox import Sandbox, SandboxConfig
from lexey_mcp.sandbox.store import key_fingerprint
from lexey_mcp.server import TOOLS
from tests.documentation import DOCS
from tests.oauth_issuer import RESOURCE_URL, serve_issuer
from tests.processes import free_port, http_server, mcp_client
from tests.reading import leaks
from tests.test_examples import nginx_binary, require
from tests.waiting import accepts, wait_until

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "examples" / "hosting"
ALICE = {"X-Lexey-Customer-Key": "lxc_AliceQ7vZp2KmX9rT4wLs", "X-Lexi-Api-Key": "wbk_AliceM3jKl9ZxC7vBn4Qw"}
BOB = {"X-Lexi-Api-Key": "wbk_Bob1ErTy6UiP0oL3kJ9hG"}
TEAM_TOKEN = "team_Hq2WsX7eDc4RfV9tGb1YnJ8u"


@contextmanager
def self_signed_certificate(directory: Path) -> Iterator[tuple[Path, Path]]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    yield cert_path, key_path


def as_written(text: str, replacements: dict[str, str]) -> str:
    """The recipe's file with only its placeholders (ports, certificate paths) replaced, each exactly once."""
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{old!r} is not in the recipe exactly once"
        text = text.replace(old, new)
    return text


@asynccontextmanager
async def nginx(prefix: Path, site: str, port: int) -> AsyncIterator[None]:
    """nginx with the recipe's site file included in `http {}`, as /etc/nginx/conf.d/ would be, listening on `port`."""
    binary = nginx_binary()
    if binary is None:
        require("nginx", "nginx is not installed (apt-get install nginx-light); .ci/run installs it")
    (prefix / "tmp").mkdir(parents=True)
    (prefix / "lexey-mcp.conf").write_text(site)
    temp = " ".join(
        f"{kind}_temp_path {prefix}/tmp/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (prefix / "nginx.conf").write_text(
        f"worker_processes 1; daemon off; pid {prefix}/nginx.pid; error_log {prefix}/error.log warn;\n"
        f"events {{ worker_connections 64; }}\n"
        f"http {{ access_log {prefix}/access.log; {temp} include {prefix}/lexey-mcp.conf; }}\n"
    )
    process = subprocess.Popen(  # noqa: ASYNC220 - returns once forked
        [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # its errors go to error.log
    )
    try:

        async def listening() -> bool:
            assert process.poll() is None, (prefix / "error.log").read_text()
            return await accepts("127.0.0.1", port)

        await wait_until(listening, f"nginx accepting connections on port {port}")
        yield
    finally:
        with anyio.CancelScope(shield=True):
            process.send_signal(signal.SIGQUIT)
            await anyio.to_thread.run_sync(functools.partial(process.wait, timeout=10))


@pytest.mark.anyio
@pytest.mark.parametrize("auth", ["token", "oauth"])
@pytest.mark.e2e
async def test_the_team_recipe_behind_tls(tmp_path: Path, auth: str) -> None:
    """Step 1 as written (a shared token), or with OAuth instead; steps 2 and 3 the same."""
    accepted = frozenset({*ALICE.values(), *BOB.values()})
    with serve_issuer() as issuer, self_signed_certificate(tmp_path) as (cert, key):
        if auth == "token":
            env = {"LEXEY_MCP_AUTH_TOKEN": TEAM_TOKEN}
            alice_token = bob_token = TEAM_TOKEN
        else:
            env = {"LEXEY_MCP_OAUTH_ISSUER": issuer.url, "LEXEY_MCP_RESOURCE_URL": RESOURCE_URL}
            alice_token, bob_token = issuer.token(), issuer.token(issuer.ec, scope="lexi")
        replica_args = ("--stateless", "--request-keys", "required")
        async with (
            Sandbox(SandboxConfig(delay=0, keys=accepted)) as sb,
            http_server(sb, tmp_path, *replica_args, **env) as first,
            http_server(sb, tmp_path, *replica_args, **env) as second,
        ):
            port = free_port()
            site = as_written(
                (RECIPE / "lexey-mcp.nginx.conf").read_text(),
                {
                    "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
                    "127.0.0.1:8001": first.url.removesuffix(MCP_PATH).removeprefix("http://"),
                    "127.0.0.1:8002": second.url.removesuffix(MCP_PATH).removeprefix("http://"),
                    "/etc/letsencrypt/live/mcp.example.com/fullchain.pem": str(cert),
                    "/etc/letsencrypt/live/mcp.example.com/privkey.pem": str(key),
                },
            )
            async with nginx(tmp_path / "nginx", site, port):
                trusted = ssl.create_default_context(cafile=str(cert))
                public = f"https://127.0.0.1:{port}"
                async with httpx2.AsyncClient(verify=trusted, trust_env=False) as http:
                    unauthenticated = await http.post(
                        f"{public}{MCP_PATH}", json={}, headers={"Accept": "application/json"}
                    )
                    if auth == "oauth":
                        metadata = (await http.get(f"{public}/.well-known/oauth-protected-resource/mcp")).json()
                        assert metadata["scopes_supported"] == list(SCOPES)
                        assert "resource_metadata=" in unauthenticated.headers["www-authenticate"]
                    health = await http.get(f"{public}{HEALTH_PATH}")
                    webhook = await http.post(f"{public}/webhooks/lexey", content=b"{}")
                assert unauthenticated.status_code == 401
                assert health.status_code == 200
                # Routed to a replica (its receiver is off without LEXEY_WEBHOOK_SECRET), not nginx's own 404 page.
                assert webhook.json()["error"].startswith("not found: the webhook receiver is off")

                alice_headers = {"Authorization": f"Bearer {alice_token}", **ALICE}
                bob_headers = {"Authorization": f"Bearer {bob_token}", **BOB}
                async with (
                    mcp_client(f"{public}{MCP_PATH}", headers=alice_headers, verify=trusted) as alice,
                    mcp_client(f"{public}{MCP_PATH}", headers=bob_headers, verify=trusted) as bob,
                ):
                    created = await alice.call_tool("create_conversation", {})
                    assert not created.is_error
                    bob_sees = {t.name for t in (await bob.list_tools()).tools}
                    assert bob_sees == ({"lexi_chat"} if auth == "oauth" else {spec.fn.__name__ for spec in TOOLS})
                    for client in (alice, bob):
                        answered = await client.call_tool("lexi_chat", {"message": "Who is Jane?"})
                        assert not answered.is_error
                    refused = await alice.call_tool("configure_org", {"instruction": "Add an FAQ."})
                    assert "send the X-Lexey-Management-Key header" in refused.content[0].text  # type: ignore[union-attr]
            served = (tmp_path / "nginx" / "access.log").read_text()
    expected = [ALICE["X-Lexey-Customer-Key"], ALICE["X-Lexi-Api-Key"], BOB["X-Lexi-Api-Key"]]
    assert [use.key_id for use in sb.key_log] == [key_fingerprint(k) for k in expected]
    assert leaks(served, (*ALICE.values(), *BOB.values(), TEAM_TOKEN)) == []  # the proxy's log keeps no secret


def test_the_hosting_doc_shows_the_recipe_files() -> None:
    section = DOCS["docs/hosting.md"].split("\n## Hosting for a team\n", 1)[1].split("\n## ", 1)[0]
    snippets = [json.loads(block) for block in re.findall(r"```jsonc\n(.*?)```", section, re.S)]
    assert snippets == [json.loads((RECIPE / "vscode.mcp.json").read_text())]
    for path in RECIPE.iterdir():
        assert f"examples/hosting/{path.name}" in section
    headers = snippets[0]["servers"]["lexey"]["headers"]
    inputs = {i["id"]: i for i in snippets[0]["inputs"]}
    for value in headers.values():  # every secret is a prompted, password-masked input, never a literal
        (reference,) = re.findall(r"\$\{input:([a-z-]+)\}", value)
        assert inputs[reference]["password"] is True
