"""MCP progress for a tool call that streams: the reply so far, redacted, in one strictly increasing sequence."""

from __future__ import annotations

from mcp.server.mcpserver import Context

from ..redaction import SPELLING_FACTOR, redact
from .state import AppState, request_secrets

#: The longest reply text sent in one progress message (the start is cut; the final result has it all).
PROGRESS_TEXT_CHARS = 4000


class Progress:
    """MCP progress for one tool call: one strictly increasing sequence (characters received across every reply
    of the call, plus one per reply begun), no total (it is never known), the reply so far as the message.
    The client already coalesces text to ≤ 2 calls a second."""

    def __init__(self, ctx: Context[AppState]) -> None:
        self._ctx = ctx
        self._secrets = request_secrets(ctx.request_context)
        self._base = 0.0
        self._sent = 0.0
        self._label = ""

    async def begin(self, label: str) -> None:
        """Another reply begins (a scenario's next turn): say which, one step on."""
        self._label = redact(label, self._secrets)
        self._base = self._sent + 1
        await self._send(self._base, self._label)

    async def __call__(self, text: str) -> None:
        if len(text) <= PROGRESS_TEXT_CHARS:
            shown = redact(text, self._secrets)
        else:
            # Only the tail is redacted (the text grows: redacting all of it each time would be quadratic). A secret
            # cut by the window's start is shorter than the margin and redaction never moves text before it, so
            # dropping the margin after redacting drops it.
            margin = SPELLING_FACTOR * max((len(s) for s in self._secrets), default=0) + 64
            window = redact(text[-(PROGRESS_TEXT_CHARS + margin) :], self._secrets)
            shown = "…" + window[margin:][-PROGRESS_TEXT_CHARS:]
        await self._send(self._base + len(text), self._label + shown)

    async def _send(self, value: float, message: str) -> None:
        if value > self._sent:
            self._sent = value
            await self._ctx.report_progress(value, None, message)


def progress(ctx: Context[AppState]) -> Progress | None:
    """This call's progress, or None over HTTP when the caller sent no progress token: nothing would be sent, yet
    the text would be built and redacted for nothing, and the stream would count against the progress rate all the
    server's streams share (`pacing.PROGRESS_RATE`). On stdio and in process, progress is always kept: an in-process
    caller's callback is called directly, with no token to look at."""
    request_context = ctx.request_context
    meta = request_context.meta
    if request_context.request is not None and (meta is None or meta.get("progress_token") is None):
        return None
    return Progress(ctx)
