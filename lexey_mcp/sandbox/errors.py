"""What the simulated APIs answer when they refuse: every error string, stated once."""

from __future__ import annotations

from starlette.responses import Response

from ..vendor import API
from .faults import RouteKind
from .wire import dumps

CHAT_ERRORS: dict[int, str] = {
    400: "Invalid request",
    401: "Missing or invalid API key",
    402: "No active subscription or credits exhausted",
    404: "Conversation not found",
    429: "Conversation message limit reached",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service temporarily unavailable",
}
LEXI_ERRORS: dict[int, tuple[str, str]] = {
    400: ("validation_error", "Invalid request"),
    401: ("invalid_key", "Invalid or expired API key"),
    402: ("insufficient_credits", "Workspace credit balance is exhausted"),
    403: ("insufficient_permissions", "Missing write:ai permission"),
    404: ("conversation_not_found", "Supplied conversation_id does not exist"),
    429: ("rate_limited", "Rate limit exceeded"),
    500: ("internal_error", "Internal server error"),
    502: ("bad_gateway", "Bad gateway"),
    503: ("service_unavailable", "Service temporarily unavailable"),
}
LEXI_DAILY_LIMIT = "Daily rate limit exceeded"
CHAT_STREAM_ERROR = "The assistant hit an internal error while generating this response"
LEXI_STREAM_ERROR = "Lexi hit an internal error while generating this response"
# Request-body problems, in the order they are checked.
NOT_JSON = "Request body must be JSON"
NOT_AN_OBJECT = "Request body must be a JSON object"
MESSAGE_REQUIRED = "message is required"
BAD_CONVERSATION_ID = "conversation_id must be a UUID"
BAD_CONTEXT = "context must be an object of strings"
BAD_ALLOW_TOOLS = "allow_tools must be a boolean"
BAD_IDEMPOTENCY_KEY = "Idempotency-Key must be a UUID"
IDEMPOTENCY_KEY_REUSED = "Idempotency-Key was already used with a different request"


def wrong_key_message(kind: RouteKind) -> str:
    return f"Wrong key type (use {API[kind].key_prefix} key)"


def chat_error_message(kind: RouteKind, status: int) -> str:
    if status == 403:
        return wrong_key_message(kind)
    return CHAT_ERRORS.get(status, f"HTTP error {status}")


def lexi_error(status: int) -> tuple[str, str]:
    return LEXI_ERRORS.get(status, ("http_error", f"HTTP error {status}"))


def json_response(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        dumps(payload).encode(), status_code=status, headers={"content-type": "application/json", **(headers or {})}
    )


def chat_error(status: int, message: str | None = None) -> Response:
    """A chat API error: `{"error": message}` (the status's usual message by default)."""
    return json_response({"error": message or CHAT_ERRORS[status]}, status)


def lexi_error_response(status: int, headers: dict[str, str], message: str | None = None) -> Response:
    """A Lexi error: `{"error": {"code", "message"}}` (the status's usual message by default)."""
    code, usual = lexi_error(status)
    return json_response({"error": {"code": code, "message": message or usual}}, status, headers)
