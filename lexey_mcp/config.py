"""Settings from the environment and a `.env` file.

Keys are `SecretStr` and are checked when they are needed, not when settings load: a host shows nothing
useful when a server dies at launch, so a bad key only disables the tools that need it. Every message
names the variable and the expected prefix, never the key.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import LexeyConfigError

KeyKind = Literal["customer", "management", "lexi"]

#: kind -> (environment variable, required prefix, what the key is)
KEY_SPECS: dict[KeyKind, tuple[str, str, str]] = {
    "customer": ("LEXEY_CUSTOMER_KEY", "lxc_", "a Lexey customer key"),
    "management": ("LEXEY_MANAGEMENT_KEY", "lxm_", "a Lexey management key"),
    "lexi": ("LEXI_API_KEY", "wbk_", "a LeadLex workspace key with the Lexi permission"),
}

# Whitespace, C0/C1 controls and DEL: nothing a real key contains, and a header-injection risk.
_BAD_KEY_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name.lower(), name)


class Settings(BaseSettings):
    """Everything the server and the client read from the environment (or `.env`)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True, case_sensitive=False
    )

    customer_key: SecretStr | None = Field(None, validation_alias=_env("LEXEY_CUSTOMER_KEY"))
    management_key: SecretStr | None = Field(None, validation_alias=_env("LEXEY_MANAGEMENT_KEY"))
    lexi_api_key: SecretStr | None = Field(None, validation_alias=_env("LEXI_API_KEY"))
    base_url: str = Field("https://lexey.ai/api/v1", validation_alias=_env("LEXEY_BASE_URL"))
    lexi_base_url: str = Field(
        "https://data.leadlex.com/functions/v1/api-gateway", validation_alias=_env("LEXI_BASE_URL")
    )
    auth_token: SecretStr | None = Field(None, validation_alias=_env("LEXEY_MCP_AUTH_TOKEN"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", validation_alias=_env("LEXEY_LOG_LEVEL")
    )
    connect_timeout: float = Field(10.0, gt=0, validation_alias=_env("LEXEY_CONNECT_TIMEOUT"))
    #: Longest silence between two chunks of a stream. The vendor's streams may last 120 s.
    read_timeout: float = Field(125.0, gt=0, validation_alias=_env("LEXEY_READ_TIMEOUT"))
    #: Wall-clock limit for one whole request, stream included (the read timeout only bounds gaps).
    stream_timeout: float = Field(130.0, gt=0, validation_alias=_env("LEXEY_STREAM_TIMEOUT"))
    max_event_bytes: int = Field(1024 * 1024, ge=1024, validation_alias=_env("LEXEY_MAX_EVENT_BYTES"))
    #: Text (and Lexi reasoning) kept from one reply; past it the stream is closed and the result is partial.
    max_reply_chars: int = Field(4_000_000, ge=1024, validation_alias=_env("LEXEY_MAX_REPLY_CHARS"))
    max_retries: int = Field(3, ge=0, le=10, validation_alias=_env("LEXEY_MAX_RETRIES"))
    #: The longest a retry will wait; a `Retry-After` beyond it is not waited for.
    max_retry_wait: float = Field(10.0, ge=0, validation_alias=_env("LEXEY_MAX_RETRY_WAIT"))
    # Operations (see lexey_mcp/observability/): limits, metrics, logs.
    #: Tool calls per upstream key, "N/second|minute|hour"; unset: no limit.
    rate_limit: str | None = Field(
        None, pattern=r"^\s*[1-9]\d{0,8}\s*/\s*(second|minute|hour)\s*$", validation_alias=_env("LEXEY_MCP_RATE_LIMIT")
    )
    max_concurrent_streams: int | None = Field(None, ge=1, validation_alias=_env("LEXEY_MCP_MAX_CONCURRENT_STREAMS"))
    #: How long a call waits for a free stream slot before it fails.
    stream_slot_wait: float = Field(30.0, gt=0, validation_alias=_env("LEXEY_MCP_STREAM_SLOT_WAIT"))
    metrics_token: SecretStr | None = Field(None, validation_alias=_env("LEXEY_MCP_METRICS_TOKEN"))
    redis_url: SecretStr | None = Field(None, validation_alias=_env("LEXEY_REDIS_URL"))
    log_format: Literal["text", "json"] = Field("text", validation_alias=_env("LEXEY_LOG_FORMAT"))

    @field_validator(
        "customer_key",
        "management_key",
        "lexi_api_key",
        "auth_token",
        "rate_limit",
        "max_concurrent_streams",
        "metrics_token",
        "redis_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("base_url", "lexi_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or _BAD_KEY_CHARS.search(value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def configured_key(self, kind: KeyKind) -> SecretStr | None:
        """The key for `kind` as configured, usable or not (None when unset)."""
        return {"customer": self.customer_key, "management": self.management_key, "lexi": self.lexi_api_key}[kind]

    def key_problem(self, kind: KeyKind) -> str | None:
        """Why the key for `kind` cannot be used, or None when it can. Never includes the key."""
        variable, prefix, what = KEY_SPECS[kind]
        key = self.configured_key(kind)
        if key is None:
            return f"{variable} is not set: set it to {what} (it starts with {prefix})."
        value = key.get_secret_value()
        if _BAD_KEY_CHARS.search(value):
            return f"{variable} contains whitespace or control characters: set it to {what} ({prefix}…) alone."
        if not value.startswith(prefix) or len(value) == len(prefix):
            other = next((k for k, (_, p, _) in KEY_SPECS.items() if value.startswith(p)), None)
            found = f" It holds an {KEY_SPECS[other][1]} key (for {KEY_SPECS[other][0]})." if other else ""
            return f"{variable} must be {what}, starting with {prefix}.{found}"
        return None

    def key(self, kind: KeyKind) -> SecretStr:
        """The usable key for `kind`, or `LexeyConfigError` saying what to set."""
        problem = self.key_problem(kind)
        if problem is not None:
            raise LexeyConfigError(problem)
        key = self.configured_key(kind)
        assert key is not None
        return key

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction."""
        values = (
            self.customer_key,
            self.management_key,
            self.lexi_api_key,
            self.auth_token,
            self.metrics_token,
            self.redis_url,
        )
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
