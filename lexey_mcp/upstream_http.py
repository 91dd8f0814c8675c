"""What the client makes of an upstream HTTP response beyond its body: how long `Retry-After` says to wait, the
rate-limit headers, where a redirect pointed (said, never followed), and no cookies kept or sent."""

from __future__ import annotations

import email.utils
import http.cookiejar
import math
from datetime import UTC, datetime
from typing import Any

import httpx2

from .models import RateLimit
from .streaming import MAX_FIELD_CHARS


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date); None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        current = datetime.now(UTC).timestamp() if now is None else now
        return max(0.0, when.timestamp() - current)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Keep no cookie and send none: the one HTTP client serves every caller (in hosted mode, each with their own
    keys), so a Set-Cookie from Lexey, a CDN or a load balancer on one caller's reply must not go out on another's."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: Any) -> bool:
        return False

    def path_return_ok(self, path: str, request: Any) -> bool:
        return False


def int_header(response: httpx2.Response, name: str) -> int | None:
    value = response.headers.get(name, "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def rate_limit_of(response: httpx2.Response) -> RateLimit | None:
    limit = RateLimit(
        limit=int_header(response, "x-ratelimit-limit"),
        remaining=int_header(response, "x-ratelimit-remaining"),
        reset=int_header(response, "x-ratelimit-reset"),
    )
    return None if limit == RateLimit() else limit


def redirect_target(location: str) -> str:
    try:
        host = httpx2.URL(location).host
    except (httpx2.InvalidURL, ValueError):
        return "an unparsable location"
    return host[:MAX_FIELD_CHARS] or "a relative location"
