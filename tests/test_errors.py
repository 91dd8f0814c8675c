"""Error bodies of both vendors, and the exception tree's messages."""

from __future__ import annotations

import pytest

from lexey_mcp import errors
from lexey_mcp.vendor import Api


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [  # content types as seen; only the body counts
        (b'{"error": "Conversation not found"}', "application/json", (None, "Conversation not found")),
        (b'{"error": {"code": "invalid_key", "message": "Bad key"}}', "application/json", ("invalid_key", "Bad key")),
        (b'{"code": "rate_limited", "message": "Slow"}', "application/json; charset=utf-8", ("rate_limited", "Slow")),
        (b'{"error": {"code": 5, "message": ["x"]}}', "application/json", (None, None)),
        (b'{"detail": "other"}', "application/json", (None, None)),
        (b"[1, 2]", "application/json", (None, None)),
        (b"<html>502</html>", "text/html", (None, None)),
        (b"{broken", "application/json", (None, None)),
        (b"[" * 100_000, "application/json", (None, None)),
        (b'{"error": "no content type"}', "", (None, "no content type")),
        (b"", "application/json", (None, None)),
    ],
)
def test_parse_error_body(body: bytes, content_type: str, expected: tuple[str | None, str | None]) -> None:
    assert errors.parse_error_body(body) == expected
    kind = content_type.partition(";")[0].strip() or "no content type"
    unknown = f"(a {kind} body in no known error shape, {len(body)} bytes, not shown)" if body else "(an empty body)"
    message = errors.api_error(500, body, content_type, api="customer", request_id=None, secrets=[]).message
    assert message == (expected[1] or unknown)


def test_api_error_picks_the_class_and_bounds_the_message() -> None:
    error = errors.api_error(
        418, b'{"error": "' + b"x" * 5000 + b'"}', "application/json", api="customer", request_id="req_9", secrets=[]
    )
    assert type(error) is errors.ServerError
    assert len(error.message) <= 501
    assert error.request_id == "req_9"
    assert isinstance(errors.api_error(404, b"", "", api="lexi", request_id=None, secrets=[]), errors.NotFoundError)


def test_every_error_is_a_lexey_error() -> None:
    for cls in (
        errors.BadRequestError,
        errors.AuthenticationError,
        errors.PaymentRequiredError,
        errors.PermissionDeniedError,
        errors.NotFoundError,
        errors.RateLimitError,
        errors.ServerError,
        errors.LexeyConfigError,
        errors.LexeyInputError,
        errors.LexeyTimeoutError,
        errors.LexeyProtocolError,
    ):
        assert issubclass(cls, errors.LexeyError)
    assert issubclass(errors.LexeyTimeoutError, errors.LexeyConnectionError)
    assert issubclass(errors.LexeyInputError, ValueError)


@pytest.mark.parametrize(
    ("api", "status", "hint"),
    [
        ("customer", 403, "set LEXEY_CUSTOMER_KEY to an lxc_ key"),
        ("management", 403, "set LEXEY_MANAGEMENT_KEY to an lxm_ key"),
        ("lexi", 403, "Lexi permission"),
        ("customer", 402, "spend limit"),
        ("lexi", 402, "credits"),
        ("customer", 429, "start a new conversation"),
        ("lexi", 401, "LEXI_API_KEY"),
    ],
)
def test_hints_say_what_to_do(api: Api, status: int, hint: str) -> None:
    assert hint in str(errors.api_error(status, b"", "", api=api, request_id=None, secrets=[]))


def test_repr_carries_no_message() -> None:
    error = errors.api_error(
        401, b'{"error": "lxc_leaked_key_value"}', "application/json", api="customer", request_id="r", secrets=[]
    )
    assert "leaked" not in repr(error)
    assert "leaked" not in str(error)


def test_retry_after_is_reported_except_for_a_conversation_limit() -> None:
    lexi = errors.api_error(429, b"", "", api="lexi", request_id=None, secrets=[], retry_after=30)
    chat = errors.api_error(429, b"", "", api="customer", request_id=None, secrets=[], retry_after=30)
    assert "Retry after 30 s." in str(lexi)
    assert "Retry after" not in str(chat)
    assert "start a new conversation" in str(chat)
