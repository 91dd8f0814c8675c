"""Log formatting: text or one JSON object per line, both redacted; the tool and request id of the current call;
control characters in logged values escaped; repeated lines throttled."""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from ..redaction import redact
from ..request_keys import request_key_values

LogFormat = Literal["text", "json"]


class CallContext(NamedTuple):
    """The MCP call a log line was written for (set by the observability middleware)."""

    tool: str | None
    request_id: str | None


current_call: ContextVar[CallContext | None] = ContextVar("lexey_mcp_current_call", default=None)


#: C0 and C1 control characters (newline, ESC, …): in a logged value, they could forge lines or drive the terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """`text` with each control character written as a `\\xNN` escape."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match[0]):02x}", text)


class _Escaped:
    """A log argument formatted with its control characters escaped (`%s` and `%r` alike)."""

    def __init__(self, value: object) -> None:
        self._value = value

    def __str__(self) -> str:
        return escape_controls(str(self._value))

    def __repr__(self) -> str:
        return escape_controls(repr(self._value))


def _escaped_args(args: Any) -> Any:
    if isinstance(args, tuple):
        return tuple(a if isinstance(a, int | float) else _Escaped(a) for a in args)
    return args


class RedactingFormatter(logging.Formatter):
    """Formats as usual, with control characters in the logged values escaped (a value cannot forge a line), then
    removes secrets from the whole line, traceback included."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        if record.args:
            record = logging.makeLogRecord({**record.__dict__, "args": _escaped_args(record.args)})
        return redact(super().format(record), [*self._secrets, *request_key_values()])


class ThrottledLog:
    """At most one line per `interval` seconds for each message (its format string), for lines anyone can cause
    (rejected tokens, refused requests, failed accepts); the next line written counts those left out."""

    def __init__(self, logger: logging.Logger, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._state: dict[str, tuple[float, int]] = {}  # message -> (last written, suppressed since)

    def log(self, level: int, msg: str, *args: object) -> None:
        now = self._clock()
        last, suppressed = self._state.get(msg, (-math.inf, 0))
        if now - last < self._interval:
            self._state[msg] = (last, suppressed + 1)
            return
        self._state[msg] = (now, 0)
        if suppressed:
            self._logger.log(level, msg + " (%d more like it since the last line)", *args, suppressed)
        else:
            self._logger.log(level, msg, *args)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, tool, request_id (and the traceback, if any)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        secrets = [*self._secrets, *request_key_values()]
        call = current_call.get()
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            # Redacted before encoding: JSON escaping could otherwise hide a secret from the match.
            "message": redact(record.getMessage(), secrets),
            "tool": call.tool if call else None,
            "request_id": call.request_id if call else None,
        }
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info), secrets)
        return json.dumps(line, ensure_ascii=False)


def log_formatter(log_format: LogFormat, secrets: list[str]) -> logging.Formatter:
    return JsonFormatter(secrets) if log_format == "json" else RedactingFormatter(secrets)
