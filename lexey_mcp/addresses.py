"""Bind addresses: how one is written in a URL, and whether it is loopback (every spelling: `localhost`,
`127.0.0.0/8`, `::1`, `[::1]`, `0:0:0:0:0:0:0:1`)."""

from __future__ import annotations

import ipaddress


def bind_address(host: str) -> str:
    """The address to bind: `[::1]` is a URL spelling of `::1`."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def url_host(host: str) -> str:
    """`host` as it goes in a URL (an IPv6 address in brackets)."""
    address = bind_address(host)
    return f"[{address}]" if ":" in address else address


def client_host(host: str) -> str:
    """How a client on this machine names a server bound to `host` in a URL: a wildcard bind over loopback."""
    address = bind_address(host)
    if address in ("", "0.0.0.0"):  # noqa: S104 - naming the loopback equivalent, not binding
        return "127.0.0.1"
    if address == "::":
        return "[::1]"
    return url_host(address)


def is_loopback(host: str) -> bool:
    host = bind_address(host)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
