"""Which upstream key a request uses: the key the request being served brings (hosted mode: `hosting.Caller`,
set around one MCP message by `hosting.acting_for`), ahead of the environment's (`Settings.key`).

`key_for` is the one place a key is obtained for an upstream call; `secrets_for` is the redaction list, the request's
keys included.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

from pydantic import SecretStr

from .errors import LexeyConfigError
from .vendor import Api

if TYPE_CHECKING:
    from .config import Settings


class RequestKeys(Protocol):
    """What the request being served brings ahead of the environment's keys."""

    def key(self, kind: Api) -> SecretStr | None:
        """Its key for `kind`, None to use the environment's, or `LexeyConfigError` (it may not use one)."""
        ...

    def key_hint(self, kind: Api) -> str:
        """Appended to a problem with the environment's key for `kind`."""
        ...

    def key_values(self) -> list[str]:
        """Its keys, for redaction."""
        ...


#: The request being served; None outside a request (stdio, the CLI's own commands).
current: ContextVar[RequestKeys | None] = ContextVar("lexey_mcp_request_keys", default=None)


def key_for(settings: Settings, kind: Api) -> SecretStr:
    """The usable key for `kind`: the current request's, else the environment's; or `LexeyConfigError` saying what
    to set (and, in a request, that it could bring its own)."""
    requested = current.get()
    if requested is None:
        return settings.key(kind)
    key = requested.key(kind)
    if key is not None:
        return key
    try:
        return settings.key(kind)
    except LexeyConfigError as exc:
        raise LexeyConfigError(f"{exc}{requested.key_hint(kind)}") from None


def request_key_values() -> list[str]:
    """The keys the request being served brought, for redaction (empty outside a request)."""
    requested = current.get()
    return [] if requested is None else requested.key_values()


def secrets_for(settings: Settings) -> list[str]:
    """Every secret to redact now: the configured ones and the keys the current request brought."""
    return settings.configured_secrets() + request_key_values()
