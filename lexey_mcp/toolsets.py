"""The toolsets, stated once: each one's name, the upstream API whose key its tools use, its OAuth scope and its
resources. Everything else (hosted mode's scopes and filters, the CLI's `--toolsets`, the events feed) reads them
here; each tool names its toolset beside its body (`server/tools/`).

Light on purpose (no MCP, pydantic or HTTP import): the command line reads it on every start.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from .vendor import API, Api

Toolset = Literal[Api, "events"]  # a toolset per API, and the escalation events

#: The customer conversation history resource (a template).
CONVERSATION_MESSAGES_URI = "lexey://conversations/{conversation_id}/messages"
#: The MCP Apps view of a test report (`server/view.py`).
REPORT_VIEW_URI = "ui://lexey-mcp/report.html"
#: The latest escalations.
ESCALATIONS_URI = "lexey://escalations"


class ToolsetFacts(NamedTuple):  # not a dataclass: dataclasses costs the command line ~5 ms
    api: Api | None  # whose key its tools use (None: they need none; webhooks are signed with LEXEY_WEBHOOK_SECRET)
    #: A token needs it for the toolset's tools and resources, and for the upstream key of the toolset's API (the
    #: server's own included: whatever path asks for a key, such as test-suite setup, a token without it never gets it).
    scope: str
    resources: tuple[str, ...]  # URIs, templates included

    @property
    def key_variable(self) -> str | None:
        """The environment variable holding its key."""
        return None if self.api is None else API[self.api].key_variable


TOOLSETS: dict[Toolset, ToolsetFacts] = {
    "customer": ToolsetFacts("customer", "lexey:customer", (CONVERSATION_MESSAGES_URI, REPORT_VIEW_URI)),
    "management": ToolsetFacts("management", "lexey:management", ()),
    "lexi": ToolsetFacts("lexi", "lexi", ()),
    "events": ToolsetFacts(None, "lexey:events", (ESCALATIONS_URI,)),
}
