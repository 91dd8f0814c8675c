"""Exceptions raised by `LexeyClient`.

    LexeyError
    ├── LexeyConfigError        a key is missing or malformed; nothing was sent
    ├── LexeyInputError         an argument is invalid (not a UUID, empty message, …); nothing was sent
    ├── LexeyConnectionError    the upstream could not be reached or the connection failed before a response
    │   └── LexeyTimeoutError
    ├── LexeyProtocolError      a response we cannot use: a redirect, or a 200 that is not an event stream
    └── LexeyAPIError           an HTTP error status before any stream (status, code, message, request_id)
        ├── BadRequestError          400
        ├── AuthenticationError      401
        ├── PaymentRequiredError     402
        ├── PermissionDeniedError    403
        ├── NotFoundError            404
        ├── RateLimitError           429
        └── ServerError              5xx (and any other status)

Errors that happen after a stream has started are not raised: they are part of the folded result
(`outcome` "error" or "partial"), so the text received so far is never lost.
Every message is built from redacted text: no key ever appears in an error.
"""

from __future__ import annotations

import json

from .redaction import redact
from .vendor import API, Api

_MAX_MESSAGE_CHARS = 500


class LexeyError(Exception):
    """Base class of every error this package raises."""


class LexeyConfigError(LexeyError):
    """A setting (usually a key) is missing or malformed. Nothing was sent."""


class LexeyInputError(LexeyError, ValueError):
    """An argument is invalid. Nothing was sent."""


class LexeyConnectionError(LexeyError):
    """The upstream could not be reached, or the connection failed before a response arrived."""


class LexeyTimeoutError(LexeyConnectionError):
    """No response arrived in time."""


class LexeyProtocolError(LexeyError):
    """The upstream answered with something we cannot use (a redirect, or a body that is not an event stream)."""


class LexeyAPIError(LexeyError):
    """The upstream answered an HTTP error status before any stream started."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        api: Api,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        rate_limit_reset: int | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.api = api
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        self.rate_limit_reset = rate_limit_reset
        super().__init__(self.__str__())

    @property
    def hint(self) -> str:
        """What the caller can do about it."""
        variable, prefix = API[self.api].key_variable, API[self.api].key_prefix
        if self.status == 400:
            return "The request was rejected as invalid (for example a message that is too long): change it."
        if self.status == 401:
            return f"The key was refused: check {variable} (a valid {prefix} key)."
        if self.status == 402:
            if self.api == "lexi":
                return "The LeadLex workspace has run out of credits: top up, then try again."
            return "No active subscription, credits exhausted or a spend limit hit: check the Lexey billing page."
        if self.status == 403:
            if self.api == "lexi":
                return f"The key lacks the Lexi permission: create a workspace key with it and set {variable}."
            return f"Wrong key type for this API: set {variable} to an {prefix} key."
        if self.status == 404:
            return "The conversation was not found: check the id, or omit it to start a new conversation."
        if self.status == 429:
            if self.api == "lexi":
                return "Lexi's rate limit is exhausted: " + (
                    f"it resets at Unix time {self.rate_limit_reset} (daily, midnight UTC)."
                    if self.rate_limit_reset
                    else "try again later."
                )
            return "This conversation has reached its message limit: start a new conversation (omit the id)."
        if self.status >= 500:
            return "The upstream service failed: try again in a moment."
        return "Unexpected status from the upstream service."

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        rid = f" (request id {self.request_id})" if self.request_id else ""
        # A conversation's message limit does not lift with time: no wait to report there.
        limit_reached = self.status == 429 and self.api != "lexi"
        wait = f" Retry after {self.retry_after:g} s." if self.retry_after and not limit_reached else ""
        return f"{API[self.api].name} answered HTTP {self.status}{code}: {self.message}{rid}. {self.hint}{wait}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, request_id={self.request_id!r})"


class BadRequestError(LexeyAPIError):
    """400: the request was invalid."""


class AuthenticationError(LexeyAPIError):
    """401: missing or invalid key."""


class PaymentRequiredError(LexeyAPIError):
    """402: no subscription, credits exhausted, or a spend limit hit."""


class PermissionDeniedError(LexeyAPIError):
    """403: wrong key type (Lexey) or a missing permission (Lexi)."""


class NotFoundError(LexeyAPIError):
    """404: the conversation does not exist."""


class RateLimitError(LexeyAPIError):
    """429: a conversation's message limit (Lexey) or the rate limit (Lexi)."""


class ServerError(LexeyAPIError):
    """5xx, or any other unexpected status."""


_BY_STATUS: dict[int, type[LexeyAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def parse_error_body(body: bytes) -> tuple[str | None, str | None]:
    """(code, message) from any of the three documented error shapes; (None, None) for anything else.

    Shapes: `{"error": "message"}`, `{"error": {"code", "message"}}`, `{"code", "message"}`, whatever the
    content type says. A body that is not JSON (an HTML page from a proxy) is never echoed.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    error = data.get("error", data)
    if isinstance(error, str):
        return None, error
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        return (
            code if isinstance(code, str) else None,
            message if isinstance(message, str) else None,
        )
    return None, None


def api_error(
    status: int,
    body: bytes,
    content_type: str,
    *,
    api: Api,
    request_id: str | None,
    secrets: list[str],
    retry_after: float | None = None,
    rate_limit_reset: int | None = None,
) -> LexeyAPIError:
    """The exception for an HTTP error response, with its message redacted and bounded."""
    code, message = parse_error_body(body)
    if message is None:
        kind = content_type.partition(";")[0].strip() or "no content type"
        shown = f"(a {kind} body in no known error shape, {len(body)} bytes, not shown)"
        message = shown if body else "(an empty body)"
    message = redact(message, secrets)
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[:_MAX_MESSAGE_CHARS] + "…"
    if code is not None:
        code = redact(code, secrets)[:100]
    cls = _BY_STATUS.get(status, ServerError)
    return cls(
        status,
        message,
        api=api,
        code=code,
        request_id=request_id,
        retry_after=retry_after,
        rate_limit_reset=rate_limit_reset,
    )
