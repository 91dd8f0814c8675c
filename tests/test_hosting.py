"""Hosted mode over streamable HTTP (the transport is the point, so `lexey-mcp` runs as a subprocess): upstream
keys per request, `--request-keys required`, and the narrowing headers."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from starlette.datastructures import Headers

from lexey_mcp.errors import LexeyConfigError
from lexey_mcp.hosting import KEY_HEADERS, TOOLSET_SCOPES, Caller, acting_for, caller_of
from lexey_mcp.observability import RedactingFormatter
from lexey_mcp.request_keys import key_for, secrets_for
from lexey_mcp.sandbox import Fault, Sandbox, SandboxConfig
from lexey_mcp.sandbox.store import key_fingerprint
from lexey_mcp.server import TOOLS, ServerOptions, build_server
from lexey_mcp.toolsets import ESCALATIONS_URI, REPORT_VIEW_URI
from tests.conftest import sandbox_settings_for
from tests.processes import http_server, mcp_client
from tests.reading import leaks, text_of
from tests.streams import CID, CUSTOMER_KEY, LEXI_KEY, MANAGEMENT_KEY, settings

pytestmark = pytest.mark.anyio

ALICE = {
    "customer": "lxc_AliceQ7vZp2KmX9rT4wLs",
    "management": "lxm_AliceH5gFq1VnR6tYe0Ui",
    "lexi": "wbk_AliceM3jKl9ZxC7vBn4Qw",
}
BOB = {
    "customer": "lxc_BobN8bY3cJdE2fG6hJ1kL",
    "management": "lxm_BobO8pAs2DkW4xZ7cV5bN",
    "lexi": "wbk_Bob1ErTy6UiP0oL3kJ9hG",
}
SERVER_KEYS = (CUSTOMER_KEY, MANAGEMENT_KEY, LEXI_KEY)
CALLS_EACH = 50
LEXI_FAULTS = 10


def headers(keys: dict[str, str]) -> dict[str, str]:
    return {KEY_HEADERS[kind]: key for kind, key in keys.items()}  # type: ignore[index]


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
@pytest.mark.e2e
async def test_two_callers_keys_never_cross(tmp_path: Path, stateless: bool) -> None:
    """Two callers with their own keys, 50 concurrent calls each (new conversations: two upstream requests with a
    wait between them; history; Lexi with retries): every upstream request carries the key of the caller it was
    made for, and no key reaches the log."""
    accepted = frozenset({*ALICE.values(), *BOB.values()})  # the server's own keys would be refused
    async with Sandbox(SandboxConfig(delay=0, keys=accepted)) as sb:
        sb.inject(Fault(target="lexi", status=503, retry_after="0", times=LEXI_FAULTS))
        args = ["--request-keys", "required", *(["--stateless"] if stateless else [])]
        env = {"LEXEY_LOG_LEVEL": "DEBUG", "LEXEY_MAX_RETRIES": str(LEXI_FAULTS)}
        async with (
            http_server(sb, tmp_path, *args, **env) as server,
            mcp_client(server.url, headers=headers(ALICE)) as alice,
            mcp_client(server.url, headers=headers(BOB)) as bob,
        ):
            callers = {"alice": alice, "bob": bob}
            conversations: dict[str, str] = {}
            for name, client in callers.items():
                created = await client.call_tool("create_conversation", {})
                assert not created.is_error, text_of(created)
                conversations[name] = created.structured_content["conversation_id"]
            owners = {cid: name for name, cid in conversations.items()}
            idempotency_keys: dict[str, str] = {}
            errors: list[str] = []

            async def call(name: str, client: Client, i: int) -> None:
                if i % 3 == 0:
                    result = await client.call_tool("send_customer_message", {"message": "Hi"})
                    if not result.is_error:
                        owners[result.structured_content["conversation_id"]] = name
                elif i % 3 == 1:
                    arguments = {"conversation_id": conversations[name]}
                    result = await client.call_tool("get_conversation_messages", arguments)
                else:
                    key = str(uuid.uuid4())
                    idempotency_keys[key] = name
                    result = await client.call_tool("lexi_chat", {"message": "Who is Jane?", "idempotency_key": key})
                if result.is_error:
                    errors.append(text_of(result))

            async with anyio.create_task_group() as group:
                for i in range(CALLS_EACH):
                    for name, client in callers.items():
                        group.start_soon(call, name, client, i)
            assert errors == []
            stderr = server.stderr()

    keys = {"alice": ALICE, "bob": BOB}
    fingerprints = {key_fingerprint(k): (name, kind) for name, ks in keys.items() for kind, k in ks.items()}
    carried: Counter[tuple[str, str]] = Counter()
    attributed: Counter[tuple[str, str]] = Counter()
    for use in sb.key_log:
        assert use.key_id in fingerprints, f"{use.method} {use.path} carried a key nobody sent"
        carried[fingerprints[use.key_id]] += 1
        owner = idempotency_keys.get(use.idempotency_key or "") or next(
            (name for cid, name in owners.items() if cid in use.path), None
        )
        if owner is not None:
            kind = "lexi" if use.idempotency_key else "customer"
            assert use.key_id == key_fingerprint(keys[owner][kind]), f"crossing: {use.path} made for {owner}"
            attributed[(owner, kind)] += 1
    sends, reads, lexi_calls = (len(range(start, CALLS_EACH, 3)) for start in (0, 1, 2))
    for name in keys:
        # Its first conversation, then two requests per new conversation and one per history read.
        assert carried[(name, "customer")] == 1 + 2 * sends + reads
        assert attributed[(name, "customer")] == sends + reads  # every message and history request was checked
    lexi_requests = 2 * lexi_calls + LEXI_FAULTS  # the retries too
    assert carried[("alice", "lexi")] + carried[("bob", "lexi")] == lexi_requests
    assert attributed[("alice", "lexi")] + attributed[("bob", "lexi")] == lexi_requests
    assert leaks(stderr, (*ALICE.values(), *BOB.values())) == []


@pytest.mark.e2e
async def test_optional_request_keys(sandbox: Sandbox, tmp_path: Path) -> None:
    """Default mode: a header's key comes before the environment's, for its API only (in both protocol eras: alice
    speaks 2025-11-25); a wrong key in a header is refused naming the header; a missing key names both the variable
    and the header."""
    wrong = {"customer": MANAGEMENT_KEY, "management": "lxm_has a space", "lexi": ALICE["customer"]}
    async with (
        http_server(sandbox, tmp_path, LEXEY_MANAGEMENT_KEY="") as server,
        mcp_client(server.url, "legacy", headers={KEY_HEADERS["customer"]: ALICE["customer"]}) as alice,
        mcp_client(server.url) as anonymous,
        mcp_client(server.url, headers=headers(wrong)) as mistaken,
    ):
        for client, expected in ((alice, ALICE["customer"]), (anonymous, CUSTOMER_KEY)):
            result = await client.call_tool("create_conversation", {})
            assert not result.is_error, text_of(result)
            assert sandbox.key_log[-1].key_id == key_fingerprint(expected)
        result = await alice.call_tool("lexi_chat", {"message": "Who is Jane?"})
        assert not result.is_error, text_of(result)
        assert sandbox.key_log[-1].key_id == key_fingerprint(LEXI_KEY)
        sent = len(sandbox.key_log)

        missing = await alice.call_tool("configure_org", {"instruction": "Add an FAQ."})
        customer = await mistaken.call_tool("create_conversation", {})
        management = await mistaken.call_tool("configure_org", {"instruction": "Add an FAQ."})
        lexi = await mistaken.call_tool("lexi_chat", {"message": "Who is Jane?"})
    assert missing.is_error
    assert text_of(missing) == (
        "LEXEY_MANAGEMENT_KEY is not set: set it to a Lexey management key (it starts with lxm_). "
        "Or send this request's key in the X-Lexey-Management-Key header."
    )
    assert customer.is_error
    assert text_of(customer) == (
        "X-Lexey-Customer-Key must be a Lexey customer key, starting with lxc_. "
        "It holds an lxm_ key (for X-Lexey-Management-Key)."
    )
    assert management.is_error
    assert text_of(management).startswith("X-Lexey-Management-Key contains whitespace or control characters")
    assert lexi.is_error
    assert text_of(lexi).startswith("X-Lexi-Api-Key must be a LeadLex workspace key with the Lexi permission")
    assert "starting with wbk_" in text_of(lexi)
    assert len(sandbox.key_log) == sent  # refused before anything was sent
    assert leaks(text_of(customer) + text_of(management) + text_of(lexi), (*wrong.values(),)) == []


@pytest.mark.e2e
async def test_required_request_keys_never_use_the_environment(sandbox: Sandbox, tmp_path: Path) -> None:
    caller = {KEY_HEADERS["customer"]: ALICE["customer"]}
    async with (
        http_server(sandbox, tmp_path, "--request-keys", "required") as server,
        mcp_client(server.url, headers=caller) as client,
    ):
        customer = await client.call_tool("create_conversation", {})
        management = await client.call_tool("configure_org", {"instruction": "Add an FAQ."})
        lexi = await client.call_tool("lexi_chat", {"message": "Who is Jane?"})
    assert not customer.is_error, text_of(customer)
    assert management.is_error
    assert text_of(management) == (
        "This server takes keys per request: send the X-Lexey-Management-Key header with a Lexey management key "
        "(it starts with lxm_)."
    )
    assert lexi.is_error
    assert "send the X-Lexi-Api-Key header" in text_of(lexi)
    assert [use.key_id for use in sandbox.key_log] == [key_fingerprint(ALICE["customer"])]


def tool_names(listing: Any) -> set[str]:
    return {t.name for t in listing.tools}


@pytest.mark.e2e
async def test_narrowing_headers_narrow(sandbox: Sandbox, tmp_path: Path) -> None:
    async with (
        http_server(sandbox, tmp_path) as server,
        mcp_client(server.url, headers={"X-MCP-Readonly": "true"}) as reader,
        mcp_client(server.url, headers={"X-MCP-Toolsets": "lexi"}) as lexi_only,
        mcp_client(server.url, headers={"X-MCP-Toolsets": "customer", "X-MCP-Readonly": "TRUE"}) as both,
        mcp_client(server.url, headers={"X-MCP-Readonly": "false"}) as everything,
    ):
        assert tool_names(await reader.list_tools()) == {"get_conversation_messages", "list_escalations"}
        refused = await reader.call_tool("send_customer_message", {"message": "Hi"})
        assert refused.is_error
        assert text_of(refused) == (
            "send_customer_message changes things, and this request's X-MCP-Readonly header "
            "allows read-only tools only."
        )
        assert tool_names(await lexi_only.list_tools()) == {"lexi_chat"}
        refused = await lexi_only.call_tool("create_conversation", {})
        assert (
            text_of(refused)
            == "create_conversation is outside the toolsets this request's X-MCP-Toolsets header allows."
        )
        assert (await lexi_only.list_resource_templates()).resource_templates == []
        with pytest.raises(MCPError, match="outside the toolsets"):
            await lexi_only.read_resource(f"lexey://conversations/{CID}/messages")
        with pytest.raises(MCPError, match="outside the toolsets"):
            async with lexi_only.listen(resource_subscriptions=[f"lexey://conversations/{CID}/messages"]):
                pass
        assert tool_names(await both.list_tools()) == {"get_conversation_messages"}
        assert [t.name for t in (await both.list_resource_templates()).resource_templates] == ["conversation_messages"]
        assert tool_names(await everything.list_tools()) == {spec.fn.__name__ for spec in TOOLS}
        everything_lists = {str(r.uri) for r in (await everything.list_resources()).resources}
        assert everything_lists == {ESCALATIONS_URI, REPORT_VIEW_URI}
        assert (await lexi_only.list_resources()).resources == []
    assert sandbox.key_log == []  # nothing refused went upstream


@pytest.mark.e2e
async def test_narrowing_headers_cannot_widen(sandbox: Sandbox, tmp_path: Path) -> None:
    widen = {"X-MCP-Toolsets": "customer,management,lexi", "X-MCP-Readonly": "false"}
    async with (
        http_server(sandbox, tmp_path, "--stateless", "--toolsets", "customer,lexi", "--read-only") as server,
        mcp_client(server.url, headers=widen) as client,
    ):
        assert tool_names(await client.list_tools()) == {"get_conversation_messages"}
        for name, arguments in (("configure_org", {"instruction": "x"}), ("lexi_chat", {"message": "Hi"})):
            result = await client.call_tool(name, arguments)
            assert result.is_error
            assert "Unknown tool" in text_of(result)
    assert sandbox.key_log == []


@pytest.mark.e2e
async def test_bad_narrowing_headers_are_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    bad = {
        "X-MCP-Toolsets": (
            "customer,billing",
            "X-MCP-Toolsets names unknown toolsets (billing): choose from customer, events, lexi, management.",
        ),
        "X-MCP-Readonly": ("maybe", "X-MCP-Readonly must be true or false."),
    }
    async with http_server(sandbox, tmp_path, "--stateless") as server:
        for name, (value, message) in bad.items():
            async with mcp_client(server.url, headers={name: value}) as client:
                with pytest.raises(MCPError) as listing:
                    await client.list_tools()
                assert str(listing.value) == message
                with pytest.raises(MCPError) as calling:
                    await client.call_tool("create_conversation", {})
                assert str(calling.value) == message
                with pytest.raises(MCPError) as listening:
                    async with client.listen(resource_subscriptions=[f"lexey://conversations/{CID}/messages"]):
                        pass
                assert str(listening.value) == message
    assert sandbox.key_log == []


async def test_every_tool_has_an_oauth_scope() -> None:
    """Under OAuth a tool without a scope is never offered: each tool the server can register needs one."""
    async with Client(build_server(settings())) as client:
        names = tool_names(await client.list_tools())
    scoped = {spec.fn.__name__ for spec in TOOLS if spec.toolset in TOOLSET_SCOPES}
    assert names
    assert names <= scoped


def test_the_current_requests_keys_are_redacted() -> None:
    """Logs and `request_keys.secrets_for` (the redaction list) include the keys of the request being served, even a
    key not shaped like the ones the generic patterns catch; `Settings` itself holds only what was configured."""
    odd = "lxc_Odd.Key+With/Chars"
    caller = caller_of(Headers({KEY_HEADERS["customer"]: odd}), None, keys_required=False, known_toolsets=[])
    assert isinstance(caller, Caller)
    record = logging.LogRecord("lexey_mcp", logging.INFO, __file__, 1, "upstream said %s", (odd,), None)
    with acting_for(caller):
        line = RedactingFormatter([]).format(record)
        assert odd in secrets_for(settings())
        assert key_for(settings(), "customer").get_secret_value() == odd
        assert odd not in settings().configured_secrets()
        assert settings().key("customer").get_secret_value() != odd
    assert leaks(line, (odd,)) == []
    assert odd not in repr(caller)
    assert odd not in secrets_for(settings())


def test_a_token_without_its_scope_never_gets_that_key() -> None:
    """Whatever asks for a key (a tool, test-suite setup), the token's scopes decide, the server's own keys too."""
    lexi_only = Caller(keys={}, keys_required=False, scopes=frozenset({"lexi"}), toolsets=None, read_only=False)
    with acting_for(lexi_only):
        assert key_for(settings(), "lexi").get_secret_value() == LEXI_KEY
        with pytest.raises(LexeyConfigError) as refused:
            key_for(settings(), "management")
    assert str(refused.value) == (
        "Using a Lexey management key needs the OAuth scope lexey:management, "
        "which this request's token does not carry."
    )


def raw_headers(*pairs: tuple[str, str]) -> Headers:
    """Headers as the ASGI server hands them over: every copy of a repeated header kept, in order."""
    return Headers(raw=[(name.lower().encode(), value.encode("latin-1")) for name, value in pairs])


def test_repeated_narrowing_headers_narrow_by_every_copy() -> None:
    """A gateway adds `X-MCP-Readonly: true` and `X-MCP-Toolsets: lexi`; the user sends other copies first: each
    copy can only narrow further, whichever comes first."""
    known = ["customer", "events", "lexi", "management"]
    caller = caller_of(
        raw_headers(
            ("X-MCP-Readonly", "false"),
            ("X-MCP-Toolsets", "customer,lexi,management"),
            ("X-MCP-Readonly", "true"),
            ("X-MCP-Toolsets", "lexi, events"),
        ),
        None,
        keys_required=False,
        known_toolsets=known,
    )
    assert isinstance(caller, Caller)
    assert caller.read_only
    assert caller.toolsets == frozenset({"lexi"})
    disjoint = caller_of(
        raw_headers(("X-MCP-Toolsets", "customer"), ("X-MCP-Toolsets", "lexi")),
        None,
        keys_required=False,
        known_toolsets=known,
    )
    assert isinstance(disjoint, Caller)
    assert disjoint.toolsets == frozenset()
    bad_copy = caller_of(
        raw_headers(("X-MCP-Readonly", "true"), ("X-MCP-Readonly", "nope")),
        None,
        keys_required=False,
        known_toolsets=known,
    )
    assert bad_copy == "X-MCP-Readonly must be true or false."


def test_a_key_header_sent_twice_is_refused() -> None:
    """Two customer keys on one request: which one to use is a guess, so neither is (and neither is quoted)."""
    twice = raw_headers((KEY_HEADERS["customer"], ALICE["customer"]), (KEY_HEADERS["customer"], BOB["customer"]))
    refusal = caller_of(twice, None, keys_required=False, known_toolsets=[])
    assert refusal == "X-Lexey-Customer-Key was sent 2 times: send it once."


def test_a_non_ascii_key_is_refused_in_the_projects_voice() -> None:
    """A header arrives decoded as Latin-1, so `lxc_café…` reaches us intact; sent on upstream it would fail deep
    inside the HTTP client as an unexplained tool error. Refused up front, naming the header, never quoting it."""
    key = "lxc_caf\xe9Q7vZp2KmX9rT4"
    caller = caller_of(raw_headers((KEY_HEADERS["customer"], key)), None, keys_required=False, known_toolsets=[])
    assert isinstance(caller, Caller)
    with acting_for(caller), pytest.raises(LexeyConfigError) as refused:
        key_for(settings(), "customer")
    assert str(refused.value) == (
        "X-Lexey-Customer-Key contains non-ASCII characters: set it to a Lexey customer key (lxc_…) alone."
    )


async def test_required_request_keys_hold_no_environment_key(sandbox: Sandbox) -> None:
    """With keys required, the environment's keys are dropped at start: even a call that reaches the tools without an
    HTTP request (here in-process; on a replica, any path outside `/mcp`) has no key to fall back on."""
    server = build_server(sandbox_settings_for(sandbox), ServerOptions(request_keys="required"))
    async with Client(server) as client:
        refused = await client.call_tool("create_conversation", {})
    assert refused.is_error
    assert text_of(refused).startswith("LEXEY_CUSTOMER_KEY is not set")
    assert sandbox.key_log == []


SUITE_WITH_SETUP = (Path(__file__).resolve().parent.parent / "examples" / "suites" / "acme-support.yaml").read_text()


@pytest.mark.e2e
async def test_test_suite_setup_uses_the_requests_management_key(sandbox: Sandbox) -> None:
    """Keys required: the suite's setup runs with the management key the request brought (the environment holds
    none), and every case with its customer key."""
    alice = caller_of(Headers(headers(ALICE)), None, keys_required=True, known_toolsets=[])
    assert isinstance(alice, Caller)
    with acting_for(alice):
        async with Client(
            build_server(sandbox_settings_for(sandbox), ServerOptions(request_keys="required"))
        ) as client:
            result = await client.call_tool("run_test_suite", {"suite": SUITE_WITH_SETUP})
    assert not result.is_error, text_of(result)
    used = {use.key_id for use in sandbox.key_log}
    assert used == {key_fingerprint(ALICE["management"]), key_fingerprint(ALICE["customer"])}


async def test_toolsets_header_keeps_other_toolsets_keys_out(sandbox: Sandbox) -> None:
    """`X-MCP-Toolsets: customer` shows run_test_suite (a customer tool), but its setup would change the org with the
    management key: refused before anything is sent, naming the header."""
    customer_only = caller_of(
        Headers({**headers(ALICE), "X-MCP-Toolsets": "customer"}),
        None,
        keys_required=True,
        known_toolsets=["customer", "events", "lexi", "management"],
    )
    assert isinstance(customer_only, Caller)
    with acting_for(customer_only):
        async with Client(
            build_server(sandbox_settings_for(sandbox), ServerOptions(request_keys="required"))
        ) as client:
            result = await client.call_tool("run_test_suite", {"suite": SUITE_WITH_SETUP})
    assert result.is_error
    assert text_of(result) == (
        "This suite has setup instructions, which need the management key. Using a Lexey management key needs the "
        "management toolset, which this request's X-MCP-Toolsets header leaves out."
    )
    assert sandbox.key_log == []
