"""Settings from the environment and a `.env` file.

Each setting has its own variable (`VARIABLES`), matched in any case; the environment wins over `.env` in the working
directory, and arguments win over both. The variables are looked up here and checked by a plain pydantic model, and
`.env` is parsed by python-dotenv. pydantic-settings did the looking up, but importing it (with its AWS, Azure, GCP
and command-line sources) was a sixth of what a start adds to the SDK's own (BENCHMARKS.md, cold start). A setting is
read from its documented variable only, never under its field's name (which pydantic-settings also tried).

Keys are `SecretStr` and are checked when they are needed, not when settings load: a host shows nothing
useful when a server dies at launch, so a bad key only disables the tools that need it. Every message
names the variable and the expected prefix, never the key.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .errors import LexeyConfigError
from .vendor import API, Api

KeyKind = Api  # the kinds of key are the APIs

#: kind -> (environment variable, required prefix, what the key is): a view of `vendor.API`
KEY_SPECS: dict[KeyKind, tuple[str, str, str]] = {
    api: (facts.key_variable, facts.key_prefix, facts.key_description) for api, facts in API.items()
}

# Whitespace, C0/C1 controls and DEL: nothing a real key contains, and a header-injection risk.
_BAD_KEY_CHARS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


MIN_AUTH_TOKEN_CHARS = 16
_RATE = re.compile(r"\s*[1-9]\d{0,8}\s*/\s*(second|minute|hour)\s*")
_GENERATE = "\"$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\""
#: An accepted value, shown when a setting is refused (a setting with a default shows its default).
_EXAMPLES = {
    "rate_limit": "60/minute",
    "redis_url": "redis://localhost:6379/0",
    "max_concurrent_streams": "50",
    "state_key": _GENERATE,
    "oauth_issuer": "https://login.example.com/",
    "oauth_jwks_url": "https://login.example.com/.well-known/jwks.json",
    "resource_url": "https://mcp.example.com/mcp",
    "confirm_changes": "1",
    "redis_namespace": "shop-eu",
}
#: Settings refused with a message that already says what to set (or lists every accepted value).
_SELF_EXPLAINED = frozenset({"auth_token", "log_level", "log_format"})


def _env(name: str) -> AliasChoices:
    return AliasChoices(name.lower(), name)


class Settings(BaseModel):
    """Everything the server and the client read from the environment (or `.env`)."""

    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,  # a secret pasted into the wrong setting is never echoed
    )

    def __init__(self, _env_file: str | Path | None = ".env", **values: Any) -> None:
        """Each setting from `values` (by field name or variable, in any case), else its variable in the environment,
        else in `_env_file` (None: no file), else its default."""
        environment = _environment(_env_file)
        given = {name.lower(): value for name, value in values.items()}
        read = {  # under the variable's name, which an error then shows
            variable.lower(): environment[variable.lower()]
            for field, variable in VARIABLES.items()
            if variable.lower() in environment and field not in given and variable.lower() not in given
        }
        super().__init__(**read, **given)

    customer_key: SecretStr | None = Field(None, validation_alias=_env(API["customer"].key_variable))
    management_key: SecretStr | None = Field(None, validation_alias=_env(API["management"].key_variable))
    lexi_api_key: SecretStr | None = Field(None, validation_alias=_env(API["lexi"].key_variable))
    base_url: str = Field("https://lexey.ai/api/v1", validation_alias=_env("LEXEY_BASE_URL"))
    lexi_base_url: str = Field(
        "https://data.leadlex.com/functions/v1/api-gateway", validation_alias=_env("LEXI_BASE_URL")
    )
    auth_token: SecretStr | None = Field(None, validation_alias=_env("LEXEY_MCP_AUTH_TOKEN"))
    #: OAuth 2.1 resource server (hosted mode, the alternative to the token above); see `oauth.py`.
    oauth_issuer: str | None = Field(None, validation_alias=_env("LEXEY_MCP_OAUTH_ISSUER"))
    oauth_jwks_url: str | None = Field(None, validation_alias=_env("LEXEY_MCP_OAUTH_JWKS_URL"))
    resource_url: str | None = Field(None, validation_alias=_env("LEXEY_MCP_RESOURCE_URL"))
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
    #: The longest text block a tool result carries; past it the text is cut with a note (hosts cut long output).
    max_result_chars: int = Field(80_000, ge=1000, validation_alias=_env("LEXEY_MAX_RESULT_CHARS"))
    #: Ask the user (MCP elicitation) before configure_org sends an instruction.
    confirm_changes: bool = Field(False, validation_alias=_env("LEXEY_CONFIRM_CHANGES"))
    #: Only the tools that change nothing (same as --read-only; a host passes it this way from a bundle's settings).
    read_only: bool = Field(False, validation_alias=_env("LEXEY_READ_ONLY"))
    #: Seals elicitation state; replicas behind one load balancer share it (at least 32 characters).
    state_key: SecretStr | None = Field(None, min_length=32, validation_alias=_env("LEXEY_MCP_STATE_KEY"))
    # Exposure limits (see http_transport.py and stdio_transport.py; docs/security.md lists them).
    header_timeout: float = Field(10.0, gt=0, validation_alias=_env("LEXEY_MCP_HEADER_TIMEOUT"))
    max_concurrency: int = Field(1000, ge=1, validation_alias=_env("LEXEY_MCP_MAX_CONCURRENCY"))
    keep_alive: int = Field(5, ge=1, validation_alias=_env("LEXEY_MCP_KEEP_ALIVE"))
    session_idle_minutes: float = Field(10.0, gt=0, validation_alias=_env("LEXEY_MCP_SESSION_IDLE_MINUTES"))
    max_line_bytes: int = Field(16 * 1024 * 1024, ge=1024, validation_alias=_env("LEXEY_MCP_MAX_LINE_BYTES"))
    max_in_flight: int = Field(64, ge=1, validation_alias=_env("LEXEY_MCP_MAX_IN_FLIGHT"))

    # Events (lexey_mcp/events): Lexey's signed webhooks, kept and pushed to subscribed MCP clients.
    #: The shared secret set in Lexey's webhook settings; unset: the receiver is off (404).
    webhook_secret: SecretStr | None = Field(None, validation_alias=_env("LEXEY_WEBHOOK_SECRET"))
    state_dir: Path = Field(Path("~/.local/state/lexey-mcp"), validation_alias=_env("LEXEY_STATE_DIR"))
    event_retention_days: float = Field(30.0, gt=0, validation_alias=_env("LEXEY_EVENT_RETENTION_DAYS"))
    #: The SQLite event store's cap on kept bodies; past it the oldest events go first.
    event_store_max_mb: float = Field(256.0, gt=0, validation_alias=_env("LEXEY_EVENT_STORE_MAX_MB"))
    #: redis://host:port/db: events in Redis, notifications fanned out to every replica through pub/sub.
    redis_url: SecretStr | None = Field(None, validation_alias=_env("LEXEY_REDIS_URL"))
    #: Every Redis key and channel of this deployment starts with `lexey-mcp:<namespace>:` (`redis_prefix`).
    redis_namespace: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", validation_alias=_env("LEXEY_REDIS_NAMESPACE")
    )

    # Operations (see lexey_mcp/observability/): limits, metrics, logs.
    #: Tool calls per upstream key, "N/second|minute|hour"; unset: no limit.
    rate_limit: str | None = Field(None, validation_alias=_env("LEXEY_MCP_RATE_LIMIT"))
    max_concurrent_streams: int | None = Field(None, ge=1, validation_alias=_env("LEXEY_MCP_MAX_CONCURRENT_STREAMS"))
    #: How long a call waits for a free stream slot before it fails.
    stream_slot_wait: float = Field(30.0, gt=0, validation_alias=_env("LEXEY_MCP_STREAM_SLOT_WAIT"))
    metrics_token: SecretStr | None = Field(None, validation_alias=_env("LEXEY_MCP_METRICS_TOKEN"))
    log_format: Literal["text", "json"] = Field("text", validation_alias=_env("LEXEY_LOG_FORMAT"))

    @field_validator(
        "customer_key",
        "management_key",
        "lexi_api_key",
        "auth_token",
        "state_key",
        "oauth_issuer",
        "oauth_jwks_url",
        "resource_url",
        "webhook_secret",
        "rate_limit",
        "max_concurrent_streams",
        "metrics_token",
        "redis_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("oauth_issuer", "oauth_jwks_url", "resource_url")
    @classmethod
    def _exact_http_url(cls, value: str | None) -> str | None:
        # Kept as written, trailing slash included: tokens' `iss` and `aud` are compared as exact strings.
        if value is not None and (not value.startswith(("http://", "https://")) or _BAD_KEY_CHARS.search(value)):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("base_url", "lexi_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or _BAD_KEY_CHARS.search(value):
            raise ValueError("must be an http:// or https:// URL")
        if "@" in urlsplit(value).netloc:
            raise ValueError("must be a URL without credentials (no user:password@): keys go in their own variables")
        return value.rstrip("/")

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None and not _RATE.fullmatch(value):
            raise ValueError("must be a count of calls per second, minute or hour: N/second, N/minute or N/hour")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        url = value.get_secret_value()
        try:
            urlsplit(url).port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            url = ""
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL (redis://host:port/db)")
        return value

    @field_validator("auth_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_AUTH_TOKEN_CHARS:
            raise ValueError(
                f"must be at least {MIN_AUTH_TOKEN_CHARS} characters (a short token is guessable, and redacting it "
                "would mangle every log line): generate one with "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

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
        return key_value_problem(kind, key.get_secret_value(), {k: spec[0] for k, spec in KEY_SPECS.items()})

    def key(self, kind: KeyKind) -> SecretStr:
        """The usable configured key for `kind`, or `LexeyConfigError` saying what to set. An upstream call asks
        `request_keys.key_for`, which puts the key the request being served brings first."""
        problem = self.key_problem(kind)
        if problem is not None:
            raise LexeyConfigError(problem)
        key = self.configured_key(kind)
        assert key is not None
        return key

    def redis_prefix(self) -> str:
        """`lexey-mcp:<namespace>:`, before every Redis key and channel of this deployment: LEXEY_REDIS_NAMESPACE, or
        a hash of what sets a deployment apart (its webhook secret, else its OAuth issuer and resource, else its state
        key), so two deployments sharing a Redis never read each other's escalations, counters or confirmations."""
        if self.redis_namespace is not None:
            return f"lexey-mcp:{self.redis_namespace}:"
        identity = next(
            (
                value
                for value in (
                    self.webhook_secret.get_secret_value() if self.webhook_secret else None,
                    f"{self.oauth_issuer} {self.resource_url}" if self.oauth_issuer else None,
                    self.state_key.get_secret_value() if self.state_key else None,
                )
                if value
            ),
            "",
        )
        digest = hashlib.sha256(b"lexey-mcp redis namespace\0" + identity.encode()).hexdigest()[:16]
        return f"lexey-mcp:{digest}:"

    def configured_secrets(self) -> list[str]:
        """Every configured secret value, for redaction."""
        values = (
            self.customer_key,
            self.management_key,
            self.lexi_api_key,
            self.auth_token,
            self.state_key,
            self.webhook_secret,
            self.metrics_token,
        )
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        if self.redis_url is not None:  # a password in the URL
            password = urlsplit(self.redis_url.get_secret_value()).password
            found += [password] if password else []
        return found


#: Setting -> the environment variable it is read from.
VARIABLES: dict[str, str] = {
    field: str(info.validation_alias.choices[-1])
    for field, info in Settings.model_fields.items()
    if isinstance(info.validation_alias, AliasChoices)
}


def _environment(env_file: str | Path | None) -> dict[str, str]:
    """The environment over `env_file`'s variables (when there is such a file), every name in lower case. The file
    may be a named pipe: 1Password Environments, for one, mounts `.env` as one."""
    found: dict[str, str] = {}
    path = Path(env_file).expanduser() if env_file is not None else None
    if path is not None and (path.is_file() or path.is_fifo()):
        from dotenv import dotenv_values  # only when there is a file: ~2 ms of every start otherwise

        found = {
            name.lower(): value for name, value in dotenv_values(path, encoding="utf-8").items() if value is not None
        }
    return found | {name.lower(): value for name, value in os.environ.items()}


def key_value_problem(kind: KeyKind, value: str, names: dict[KeyKind, str]) -> str | None:
    """Why `value` is not a usable key for `kind`, naming where it came from (`names`: kind -> variable or
    header). Never includes the key."""
    _, prefix, what = KEY_SPECS[kind]
    name = names[kind]
    if _BAD_KEY_CHARS.search(value):
        return f"{name} contains whitespace or control characters: set it to {what} ({prefix}…) alone."
    if not value.isascii():  # an HTTP header cannot carry it upstream
        return f"{name} contains non-ASCII characters: set it to {what} ({prefix}…) alone."
    if not value.startswith(prefix) or len(value) == len(prefix):
        other = next((k for k, (_, p, _) in KEY_SPECS.items() if value.startswith(p)), None)
        found = f" It holds an {KEY_SPECS[other][1]} key (for {names[other]})." if other else ""
        return f"{name} must be {what}, starting with {prefix}.{found}"
    return None


def _requirement(error: dict[str, object], whole: bool) -> str:
    """What a setting must be, from one pydantic error; never the value it had."""
    ctx = error.get("ctx")
    limits = ctx if isinstance(ctx, dict) else {}
    kind = str(error["type"])
    if kind == "value_error":
        return str(limits.get("error", "is invalid"))
    number = "a whole number" if whole else "a number"
    for bound, words in (("gt", "greater than"), ("ge", "at least"), ("lt", "less than"), ("le", "at most")):
        if bound in limits:
            return f"must be {number} {words} {limits[bound]:g}"
    if kind == "literal_error":
        return f"must be one of {limits.get('expected', '')}".strip()
    if kind in ("string_too_short", "too_short"):
        return f"must be at least {limits.get('min_length')} characters"
    if kind in ("int_parsing", "int_from_float"):
        return "must be a whole number"
    if kind in ("float_parsing", "finite_number"):
        return "must be a number"
    if kind == "bool_parsing":
        return "must be 1 or 0 (true or false)"
    if kind == "string_pattern_mismatch":
        return "is not of the accepted form"
    return "is invalid"


def _example(field: str) -> str | None:
    """An accepted value of `field`: its example, or its default."""
    if field in _SELF_EXPLAINED:
        return None
    if field in _EXAMPLES:
        return _EXAMPLES[field]
    default = Settings.model_fields[field].default if field in Settings.model_fields else None
    if default is None or isinstance(default, SecretStr):
        return None
    return f"{default:g}" if isinstance(default, float) else str(default)


def describe_settings_error(exc: ValidationError) -> str:
    """One line per bad setting, naming its variable, what it must be and an accepted value. Never the value it
    had: it may be a secret."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        name = str(error["loc"][0]).lower() if error["loc"] else ""
        variable, field, whole = _VARIABLES.get(name, (name.upper(), name, False))
        example = _example(field)
        shown = f"; for example {variable}={example}" if example is not None else ""
        lines.append(f"{variable} {_requirement(dict(error), whole)}{shown}.")
    return "\n".join(dict.fromkeys(lines))


def _variables() -> dict[str, tuple[str, str, bool]]:
    """Field name or alias (lower case) -> (environment variable, field, whether it takes a whole number)."""
    table: dict[str, tuple[str, str, bool]] = {}
    for field, info in Settings.model_fields.items():
        variable = VARIABLES[field]
        whole = info.annotation in (int, int | None)
        for name in (field, variable.lower()):
            table[name] = (variable, field, whole)
    return table


_VARIABLES = _variables()
