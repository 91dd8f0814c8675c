"""The simulated APIs as one ASGI app: the chat APIs (`chat_api`), Lexi (`lexi_api`) and `/_sandbox` (`admin_api`)."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from .admin_api import AdminAPI
from .chat_api import ChatAPI
from .errors import chat_error, json_response
from .lexi_api import LexiAPI
from .routing import CHAT_PREFIX, LEXI_PREFIX, Front
from .store import Store
from .webhooks import WebhookSender

__all__ = ["CHAT_PREFIX", "LEXI_PREFIX", "SandboxApp"]

logger = logging.getLogger("lexey_mcp.sandbox")


class SandboxApp:
    """The route handlers, bound to one store."""

    def __init__(self, store: Store, webhooks: WebhookSender | None = None) -> None:
        self.store = store
        self.chat = ChatAPI(store, webhooks)
        self.lexi = LexiAPI(store)
        self.admin = AdminAPI(store)

    def asgi(self) -> ASGIApp:
        app = Starlette(
            routes=[*self.chat.routes(), *self.lexi.routes(), *self.admin.routes()],
            exception_handlers={HTTPException: self._http_error, Exception: self._crash},
        )
        return Front(app, self.store)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = "Not found" if status == 404 else "Method not allowed" if status == 405 else f"HTTP error {status}"
        if request.url.path.startswith(LEXI_PREFIX):
            code = "not_found" if status == 404 else "method_not_allowed" if status == 405 else "http_error"
            return json_response({"error": {"code": code, "message": message}}, status)
        return chat_error(status, message)

    async def _crash(self, request: Request, exc: Exception) -> Response:
        logger.exception("sandbox handler failed")
        return chat_error(500)
