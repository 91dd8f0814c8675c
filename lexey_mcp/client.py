"""`LexeyClient`: the Lexey customer and management chat APIs and Lexi, as async methods. Usable without MCP.

    async with LexeyClient(Settings()) as client:
        cid = await client.customer.create_conversation()
        reply = await client.customer.send_message(cid, "What are your business hours?")
        print(reply.text, reply.outcome, reply.conversation_status)

Every streamed reply is read to the end and folded into a `ChatResult` / `LexiResult`; a stream that
errors, drops or stalls still returns, with `outcome` "error" / "partial" and the text received so far.
Failures before a stream starts raise the exceptions in `lexey_mcp.errors`.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import anyio
import httpx2
from pydantic import ValidationError

from . import __version__
from .config import Settings
from .errors import LexeyConnectionError, LexeyProtocolError, LexeyTimeoutError, api_error
from .models import ChatResult, LexiResult, Message, PartialReason
from .observability import Observer, Upstream
from .redaction import redact
from .request_keys import key_for, secrets_for
from .stream_reading import OnText, drain, read_stream
from .streaming import MAX_FIELD_CHARS, ChatFold, Fold, LexiFold
from .upstream_http import NoCookies, int_header, parse_retry_after, rate_limit_of, redirect_target
from .validation import LEXI_MAX_MESSAGE_CHARS, check_context, check_message, check_uuid
from .vendor import API, Api

logger = logging.getLogger("lexey_mcp.client")

#: When a failed request may be sent again.
#: "unsent": only if the connection failed before the request went out (chat messages: no idempotency key).
#: "idempotent": also on 502/503/504 (reads).  "lexi": also on 429 and 5xx (same Idempotency-Key each time).
RetryPolicy = Literal["unsent", "idempotent", "lexi"]

_ERROR_BODY_LIMIT = 64 * 1024
#: Idle connections kept for the next calls.
IDLE_CONNECTIONS = 100
_JSON_BODY_LIMIT = 16 * 1024 * 1024
_NOT_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)


async def _read_bounded(response: httpx2.Response, limit: int) -> bytes:
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                break
    except httpx2.TransportError:
        pass  # an error body cut short is still worth reporting
    return bytes(body)


class LexeyClient:
    """The three APIs over one `httpx2.AsyncClient`. Use as an async context manager."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        trust_env: bool = True,
        observer: Observer | None = None,
    ) -> None:
        """`trust_env=False` ignores HTTP(S)_PROXY and friends (the sandbox lives on loopback). `observer`
        records metrics and spans (the server's); without one, nothing is recorded."""
        self.settings = settings if settings is not None else Settings()
        self.observer = observer if observer is not None else Observer(self.settings, enabled=False)
        self._transport = transport
        self._trust_env = trust_env
        self._http: httpx2.AsyncClient | None = None
        self.customer = ChatAPI(self, "customer")
        self.management = ChatAPI(self, "management")

    def _session(self) -> httpx2.AsyncClient:
        """The HTTP client, made on first use: it loads the TLS stack and CA bundle (~50 ms), which a server
        should not pay before it can answer `initialize`."""
        if self._http is None:
            s = self.settings
            self._http = httpx2.AsyncClient(
                transport=self._transport,
                trust_env=self._trust_env,
                timeout=httpx2.Timeout(connect=s.connect_timeout, read=s.read_timeout, write=s.read_timeout, pool=None),
                limits=httpx2.Limits(max_connections=None, max_keepalive_connections=IDLE_CONNECTIONS),
                follow_redirects=False,  # a redirect would carry the key to wherever it points
                cookies=http.cookiejar.CookieJar(policy=NoCookies()),
                headers={"User-Agent": f"lexey-mcp/{__version__}"},
            )
        return self._http

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def __repr__(self) -> str:
        return f"LexeyClient(base_url={self.settings.base_url!r}, lexi_base_url={self.settings.lexi_base_url!r})"

    async def lexi_chat(
        self,
        message: str,
        conversation_id: str | None = None,
        context: Mapping[str, object] | None = None,
        allow_tools: bool = True,
        idempotency_key: str | None = None,
        *,
        on_text: OnText | None = None,
    ) -> LexiResult:
        """Ask Lexi, LeadLex's CRM assistant. A retry with the same `idempotency_key` is charged once."""
        check_message(message, max_chars=LEXI_MAX_MESSAGE_CHARS)
        if conversation_id is not None:
            check_uuid(conversation_id)
        checked_context = check_context(context)
        key = check_uuid(idempotency_key, "idempotency_key") if idempotency_key is not None else str(uuid.uuid4())
        body: dict[str, Any] = {"message": message, "allow_tools": allow_tools}
        if conversation_id is not None:
            body["conversation_id"] = conversation_id
        if checked_context is not None:
            body["context"] = checked_context
        s = self.settings
        fold = LexiFold(
            conversation_id=conversation_id,
            max_reply_chars=s.max_reply_chars,
            secrets=secrets_for(s),
            idempotency_key=key,
        )
        url = f"{s.lexi_base_url}/v1/lexi/chat/stream"
        reason = await self._stream("lexi", url, body, fold, on_text, headers={"Idempotency-Key": key})
        return fold.result(reason)

    async def _stream(
        self,
        api: Api,
        url: str,
        body: dict[str, Any],
        fold: Fold,
        on_text: OnText | None,
        *,
        headers: dict[str, str] | None = None,
    ) -> PartialReason | None:
        """POST and fold the reply stream: the one place an upstream stream is sent, read, and its ending decided.
        Returns why it ended early (None: it reached [DONE])."""
        reason: PartialReason | None = "timeout"  # unless read_stream says otherwise
        started = False
        policy: RetryPolicy = "lexi" if api == "lexi" else "unsent"
        headers = {"Accept": "text/event-stream", **(headers or {})}
        deadline = anyio.current_time() + self.settings.stream_timeout
        async with self.observer.upstream(api, stream=True) as upstream:
            with anyio.CancelScope(deadline=deadline) as scope:
                async with self._open(upstream, "POST", url, policy, json_body=body, headers=headers) as response:
                    media_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
                    if media_type != "text/event-stream":
                        shown = self._shown(media_type[:100]) or "no content type"
                        raise LexeyProtocolError(
                            f"{url} answered HTTP {response.status_code} with {shown} instead of an event stream."
                        )
                    fold.begin(self._request_id(response), rate_limit_of(response) if api == "lexi" else None)
                    started = True
                    chunks = response.aiter_bytes()
                    reason = await read_stream(
                        chunks, fold, max_event_bytes=self.settings.max_event_bytes, on_text=on_text, deadline=deadline
                    )
                    if reason is None:
                        await drain(chunks)
            if scope.cancelled_caught and not started:
                raise LexeyTimeoutError(f"No response from {url} within {self.settings.stream_timeout:g} s.")
            upstream.ended(fold, reason)
        if reason is not None:
            logger.info("stream from %s ended early: %s", url, reason)
        return reason

    def _shown(self, text: str) -> str:
        """Upstream text fit for a message: redacted."""
        return redact(text, secrets_for(self.settings))

    def _request_id(self, response: httpx2.Response) -> str | None:
        """The upstream's X-Request-ID, bounded and redacted (it is echoed to the caller)."""
        value = response.headers.get("x-request-id")
        return None if value is None else self._shown(value[:MAX_FIELD_CHARS])

    async def _json(self, api: Api, method: str, url: str, policy: RetryPolicy) -> Any:
        """The JSON body of a successful answer."""
        async with self.observer.upstream(api, stream=False) as upstream:
            with anyio.move_on_after(self.settings.stream_timeout) as deadline:
                async with self._open(upstream, method, url, policy) as response:
                    body = await _read_bounded(response, _JSON_BODY_LIMIT)
                    status = response.status_code
            if deadline.cancelled_caught:
                raise LexeyTimeoutError(f"No complete answer from {url} within {self.settings.stream_timeout:g} s.")
        if len(body) > _JSON_BODY_LIMIT:
            raise LexeyProtocolError(f"{url} answered a body over {_JSON_BODY_LIMIT} bytes.")
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise LexeyProtocolError(f"{url} answered HTTP {status} with a body that is not JSON.") from None

    @asynccontextmanager
    async def _open(
        self,
        upstream: Upstream,
        method: str,
        url: str,
        policy: RetryPolicy,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> AsyncIterator[httpx2.Response]:
        """Send with the API's key and retries; yield a successful (2xx) streaming response."""
        api = upstream.api
        key = key_for(self.settings, api)  # LexeyConfigError before anything is sent
        all_headers = {**(headers or {}), "Authorization": f"Bearer {key.get_secret_value()}"}
        attempt = 0
        while True:
            http = self._session()
            request = http.build_request(method, url, json=json_body, headers=all_headers)
            try:
                response = await upstream.send(http, request)
            except _NOT_SENT as exc:
                if attempt < self.settings.max_retries:
                    attempt += 1
                    logger.info("%s %s: %s; retrying (%d)", method, url, type(exc).__name__, attempt)
                    await anyio.sleep(min(self.settings.max_retry_wait, 0.25 * 2.0**attempt))
                    continue
                raise LexeyConnectionError(
                    f"Could not connect to {url} (from {API[api].url_variable}): {type(exc).__name__}."
                ) from None
            except httpx2.TimeoutException:
                raise LexeyTimeoutError(f"{method} {url} timed out before a response.") from None
            except httpx2.TransportError as exc:
                raise LexeyConnectionError(f"{method} {url} failed: {type(exc).__name__}.") from None
            logger.debug("%s %s -> %d", method, url, response.status_code)
            if response.is_success:
                break
            wait = await self._wait_to_retry(api, policy, response, attempt, url)
            attempt += 1
            logger.info("%s %s -> %d; retrying in %.2f s (%d)", method, url, response.status_code, wait, attempt)
            await anyio.sleep(wait)
        try:
            yield response
        finally:
            await _close(response)

    async def _wait_to_retry(
        self, api: Api, policy: RetryPolicy, response: httpx2.Response, attempt: int, url: str
    ) -> float:
        """Seconds to wait before sending again after an unsuccessful `response` (closed here), or the error it is:
        `LexeyProtocolError` for a redirect, else the `LexeyAPIError` of its status when it is final."""
        try:
            if response.is_redirect:
                target = self._shown(redirect_target(response.headers.get("location", "")))
                raise LexeyProtocolError(
                    f"{url} answered a redirect (HTTP {response.status_code}) to {target}; not followed, so the "
                    "key stays where it belongs. Check the base URL setting."
                )
            body = await _read_bounded(response, _ERROR_BODY_LIMIT)
            wait = self._retry_wait(policy, response, attempt)
            if wait is None:
                raise api_error(
                    response.status_code,
                    body,
                    response.headers.get("content-type", ""),
                    api=api,
                    request_id=self._request_id(response),
                    secrets=secrets_for(self.settings),
                    retry_after=parse_retry_after(response.headers.get("retry-after")),
                    rate_limit_reset=int_header(response, "x-ratelimit-reset"),
                )
            return wait
        finally:
            await _close(response)

    def _retry_wait(self, policy: RetryPolicy, response: httpx2.Response, attempt: int) -> float | None:
        """Seconds to wait before sending again, or None when this response is final."""
        status = response.status_code
        if attempt >= self.settings.max_retries:
            return None
        if policy == "lexi":
            retryable = status == 429 or status >= 500
        elif policy == "idempotent":
            retryable = status in (502, 503, 504)
        else:
            retryable = False
        if not retryable:
            return None
        cap = self.settings.max_retry_wait
        after = parse_retry_after(response.headers.get("retry-after"))
        if after is not None:
            return after if after <= cap else None  # never wait longer than the cap: report it instead
        reset = int_header(response, "x-ratelimit-reset")
        if status == 429 and int_header(response, "x-ratelimit-remaining") == 0 and reset is not None:
            until_reset = reset - time.time()
            return max(0.0, until_reset) if until_reset <= cap else None  # a daily reset is hours away
        return min(cap, 0.5 * 2.0**attempt)


async def _close(response: httpx2.Response) -> None:
    # Shielded: a cancelled call must still close its upstream connection, at once.
    with anyio.CancelScope(shield=True):
        await response.aclose()


class ChatAPI:
    """One of the two Lexey chat APIs ("customer" or "management"): same routes, different keys."""

    def __init__(self, client: LexeyClient, kind: Literal["customer", "management"]) -> None:
        self._client = client
        self.kind: Literal["customer", "management"] = kind

    @property
    def root(self) -> str:
        return f"{self._client.settings.base_url}/{self.kind}"

    def _messages_url(self, conversation_id: str) -> str:
        return f"{self.root}/conversations/{quote(check_uuid(conversation_id), safe='')}/messages"

    async def create_conversation(self) -> str:
        """A new conversation's id."""
        data = await self._client._json(self.kind, "POST", f"{self.root}/conversations", "unsent")
        cid = data.get("conversationId") if isinstance(data, dict) else None
        if not isinstance(cid, str) or not cid:
            raise LexeyProtocolError("Creating a conversation answered no conversationId.")
        return cid

    async def send_message(self, conversation_id: str, message: str, *, on_text: OnText | None = None) -> ChatResult:
        """Send `message` and fold the agent's streamed reply."""
        url = self._messages_url(conversation_id)
        check_message(message)
        s = self._client.settings
        fold = ChatFold(
            conversation_id=conversation_id, request_id=None, max_reply_chars=s.max_reply_chars, secrets=secrets_for(s)
        )
        reason = await self._client._stream(self.kind, url, {"message": message}, fold, on_text)
        return fold.result(reason)

    async def get_messages(self, conversation_id: str) -> list[Message]:
        """The conversation's history, as the API returns it."""
        url = self._messages_url(conversation_id)
        data = await self._client._json(self.kind, "GET", url, "idempotent")
        raw = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(raw, list):
            raise LexeyProtocolError("The message history answered no messages list.")
        try:
            return [Message.model_validate(m) for m in raw]
        except ValidationError:
            raise LexeyProtocolError("The message history has entries without a role or content.") from None
