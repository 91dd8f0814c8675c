"""Bind addresses as clients on this machine name them: one rule for the sandbox's URL and the webhook URL."""

from __future__ import annotations

import pytest

from lexey_mcp.addresses import client_host


@pytest.mark.parametrize(
    ("bound", "named"),
    [
        ("", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),
        ("::", "[::1]"),
        ("[::]", "[::1]"),
        ("127.0.0.2", "127.0.0.2"),
        ("::1", "[::1]"),
        ("[::1]", "[::1]"),  # already in URL form: not bracketed twice
        ("localhost", "localhost"),
        ("192.0.2.10", "192.0.2.10"),
    ],
)
def test_a_wildcard_bind_is_named_by_loopback_and_ipv6_goes_in_brackets(bound: str, named: str) -> None:
    assert client_host(bound) == named
