"""Settings: environment and .env loading, key checks whose messages never show the key."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lexey_mcp.config import Settings
from lexey_mcp.errors import LexeyConfigError
from tests.streams import CUSTOMER_KEY, LEXI_KEY, MANAGEMENT_KEY


def test_reads_the_documented_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEXEY_CUSTOMER_KEY", CUSTOMER_KEY)
    monkeypatch.setenv("LEXEY_MANAGEMENT_KEY", MANAGEMENT_KEY)
    monkeypatch.setenv("LEXI_API_KEY", LEXI_KEY)
    monkeypatch.setenv("LEXEY_BASE_URL", "http://127.0.0.1:9/api/v1/")
    monkeypatch.setenv("LEXI_BASE_URL", "http://127.0.0.1:9/gw")
    monkeypatch.setenv("LEXEY_LOG_LEVEL", "debug")
    s = Settings(_env_file=None)
    assert s.key("customer").get_secret_value() == CUSTOMER_KEY
    assert s.key("management").get_secret_value() == MANAGEMENT_KEY
    assert s.key("lexi").get_secret_value() == LEXI_KEY
    assert (s.base_url, s.lexi_base_url, s.log_level) == ("http://127.0.0.1:9/api/v1", "http://127.0.0.1:9/gw", "DEBUG")


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LEXEY_CUSTOMER_KEY", "LEXEY_BASE_URL", "LEXI_BASE_URL", "LEXEY_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    s = Settings(_env_file=None)
    assert s.base_url == "https://lexey.ai/api/v1"
    assert s.lexi_base_url == "https://data.leadlex.com/functions/v1/api-gateway"
    assert s.log_level == "INFO"
    assert s.read_timeout > 120
    assert s.stream_timeout > 120


def test_reads_a_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEXEY_CUSTOMER_KEY", raising=False)
    (tmp_path / ".env").write_text(f"LEXEY_CUSTOMER_KEY={CUSTOMER_KEY}\nLEXEY_STREAM_TIMEOUT=42\n")
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.key("customer").get_secret_value() == CUSTOMER_KEY
    assert s.stream_timeout == 42


def test_arguments_win_over_the_environment_which_wins_over_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "LEXEY_STREAM_TIMEOUT=42\nLEXEY_READ_TIMEOUT=41\nLEXEY_MAX_RETRIES=7\nLEXEY_CONNECT_TIMEOUT=3\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEXEY_READ_TIMEOUT", "50")
    monkeypatch.setenv("LEXEY_MAX_RETRIES", "2")
    monkeypatch.setenv("LEXEY_CONNECT_TIMEOUT", "4")
    s = Settings(max_retries=5, LEXEY_CONNECT_TIMEOUT=6)  # by field name, and by variable
    assert (s.stream_timeout, s.read_timeout, s.max_retries, s.connect_timeout) == (42, 50, 5, 6)
    assert Settings(_env_file=None).stream_timeout == 130  # no file read: the default
    assert Settings(_env_file=tmp_path / ".env").stream_timeout == 42


def test_arguments_are_matched_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEXEY_MAX_RETRIES", "2")
    monkeypatch.setenv("LEXEY_READ_TIMEOUT", "50")
    s = Settings(_env_file=None, MAX_RETRIES=5, Lexey_Read_Timeout=6)
    assert (s.max_retries, s.read_timeout) == (5, 6)


def test_an_error_names_the_variable_a_refused_value_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a library user reads in the `ValidationError` (the command line says it through describe_settings_error)."""
    monkeypatch.setenv("LEXEY_MAX_RETRIES", "99")
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None)
    assert [error["loc"] for error in refused.value.errors()] == [("lexey_max_retries",)]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_reads_a_dotenv_that_is_a_named_pipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1Password Environments mounts `.env` as a named pipe (pydantic-settings read those too)."""
    fifo = tmp_path / ".env"
    os.mkfifo(fifo)
    monkeypatch.chdir(tmp_path)

    def write() -> None:
        with contextlib.suppress(BrokenPipeError), fifo.open("w") as pipe:  # opens once a reader does
            pipe.write("LEXEY_STREAM_TIMEOUT=42\n")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        assert Settings().stream_timeout == 42
    finally:
        # A writer still waiting for a reader (the pipe was not read) goes on; this open never waits itself.
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(timeout=60)
    assert not writer.is_alive()


def test_a_dotenv_path_may_start_with_the_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lexey.env").write_text("LEXEY_STREAM_TIMEOUT=42\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Settings(_env_file="~/lexey.env").stream_timeout == 42


def test_each_setting_is_read_from_its_own_variable_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("lexey_log_level", "warning")
    for unrelated in ("BASE_URL", "LOG_LEVEL", "READ_ONLY", "STATE_DIR", "KEEP_ALIVE", "AUTH_TOKEN"):
        monkeypatch.setenv(unrelated, "nonsense")  # a field's name, not its variable: not ours
    s = Settings(_env_file=None)
    assert (s.log_level, s.base_url, s.read_only, s.keep_alive, s.auth_token) == (
        "WARNING",
        "https://lexey.ai/api/v1",
        False,
        5,
        None,
    )


@pytest.mark.parametrize(
    ("kind", "value", "needle"),
    [
        (
            "customer",
            MANAGEMENT_KEY,
            "LEXEY_CUSTOMER_KEY must be a Lexey customer key, starting with lxc_. It holds an "
            "lxm_ key (for LEXEY_MANAGEMENT_KEY)",
        ),
        ("management", CUSTOMER_KEY, "LEXEY_MANAGEMENT_KEY must be a Lexey management key, starting with lxm_."),
        (
            "lexi",
            CUSTOMER_KEY,
            "LEXI_API_KEY must be a LeadLex workspace key with the Lexi permission, starting with wbk_",
        ),
        ("customer", "sk-live-abcdef123456", "starting with lxc_"),
        ("customer", "lxc_", "starting with lxc_"),
        ("customer", CUSTOMER_KEY + "\n", "whitespace or control characters"),
        ("customer", " " + CUSTOMER_KEY, "whitespace or control characters"),
        ("customer", CUSTOMER_KEY[:10] + "\x00" + CUSTOMER_KEY[10:], "whitespace or control characters"),
        ("lexi", LEXI_KEY[:8] + "\u00a0" + LEXI_KEY[8:], "whitespace or control characters"),
    ],
)
def test_wrong_keys_are_refused_by_name_never_by_value(kind: str, value: str, needle: str) -> None:
    field = {"customer": "customer_key", "management": "management_key", "lexi": "lexi_api_key"}[kind]
    values: dict[str, Any] = {field: value}
    s = Settings(_env_file=None, **values)
    with pytest.raises(LexeyConfigError) as info:
        s.key(kind)  # type: ignore[arg-type]
    message = str(info.value)
    assert needle in message
    if len(value.strip()) > 4:
        assert value.strip()[4:12] not in message
    assert s.key_problem(kind) == message  # type: ignore[arg-type]


def test_unset_and_empty_keys_say_what_to_set() -> None:
    s = Settings(_env_file=None, customer_key="")
    assert s.customer_key is None
    expected = "LEXEY_CUSTOMER_KEY is not set: set it to a Lexey customer key (it starts with lxc_)."
    assert s.key_problem("customer") == expected


@pytest.mark.parametrize("url", ["ftp://x", "lexey.ai/api", "http://a b", "http://x\n"])
def test_base_url_must_be_http(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        Settings(_env_file=None, base_url=url)


def test_secrets_lists_every_configured_secret() -> None:
    s = Settings(_env_file=None, customer_key=CUSTOMER_KEY, auth_token="tok_1234567890abcd")
    assert s.configured_secrets() == [CUSTOMER_KEY, "tok_1234567890abcd"]
