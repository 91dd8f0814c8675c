"""`/_sandbox`: statistics and fault injection (no auth; bearer keys are redacted)."""

from __future__ import annotations

import json

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .errors import json_response
from .faults import Fault
from .routing import ADMIN_PREFIX, redact
from .store import Store

_FAULTS = TypeAdapter(Fault | list[Fault])


class AdminAPI:
    def __init__(self, store: Store) -> None:
        self.store = store

    def routes(self) -> list[Route]:
        return [
            Route(ADMIN_PREFIX + "/stats", self.stats, methods=["GET"]),
            Route(ADMIN_PREFIX + "/faults", self.list_faults, methods=["GET"]),
            Route(ADMIN_PREFIX + "/faults", self.add_faults, methods=["POST"]),
            Route(ADMIN_PREFIX + "/faults", self.clear_faults, methods=["DELETE"]),
        ]

    async def stats(self, request: Request) -> Response:
        return json_response(
            {
                **self.store.stats.as_dict(),
                "faults_pending": len(self.store.faults),
                "last_headers": {kind: redact(h) for kind, h in self.store.last_headers.items()},
                "requests_log": [list(r) for r in self.store.requests_log],
            }
        )

    async def list_faults(self, request: Request) -> Response:
        pending = [
            {**fault.model_dump(mode="json", exclude_defaults=True, exclude_none=True), "remaining": left}
            for fault, left in self.store.faults.pending()
        ]
        return json_response({"faults": pending})

    async def add_faults(self, request: Request) -> Response:
        try:
            parsed = _FAULTS.validate_json(await request.body())
        except ValidationError as exc:
            details = json.loads(exc.json(include_url=False, include_input=False))
            return json_response({"error": "Invalid fault", "details": details}, 400)
        faults = parsed if isinstance(parsed, list) else [parsed]
        for fault in faults:
            self.store.faults.push(fault)
        return json_response({"queued": len(faults), "pending": len(self.store.faults)}, 201)

    async def clear_faults(self, request: Request) -> Response:
        return json_response({"cleared": self.store.faults.clear()})
