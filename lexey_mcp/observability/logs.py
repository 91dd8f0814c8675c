"""Log formatting: text or one JSON object per line, both redacted; the tool and request id of the current call."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from ..config import request_key_values
from ..redaction import redact

LogFormat = Literal["text", "json"]


class CallContext(NamedTuple):
    """The MCP call a log line was written for (set by the observability middleware)."""

    tool: str | None
    request_id: str | None


current_call: ContextVar[CallContext | None] = ContextVar("lexey_mcp_current_call", default=None)


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then removes secrets from the whole line, traceback included."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), [*self._secrets, *request_key_values()])


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
