"""The toolsets, stated once: each one's name, the upstream API whose key its tools use, its OAuth scope, its tools
and its resources. Everything else (the server's tool table, hosted mode's scopes and filters, the CLI's
`--toolsets`, the events feed) reads them here.

Light on purpose (no MCP, pydantic or HTTP import): the command line reads it on every start.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from .vendor import API, Api

Toolset = Literal[Api, "events"]  # a toolset per API, and the escalation events

#: The customer conversation history resource (a template).
CONVERSATION_MESSAGES_URI = "lexey://conversations/{conversation_id}/messages"
#: The latest escalations.
ESCALATIONS_URI = "lexey://escalations"
#: The customer tools that add messages to a conversation.
_ADDING_MESSAGES = ("send_customer_message", "run_customer_scenario")


class ToolsetFacts(NamedTuple):  # not a dataclass: dataclasses costs the command line ~5 ms
    api: Api | None  # whose key its tools use (None: they need none; webhooks are signed with LEXEY_WEBHOOK_SECRET)
    #: A token needs it for the toolset's tools and resources, and for the upstream key of the toolset's API (the
    #: server's own included: whatever path asks for a key, such as test-suite setup, a token without it never gets it).
    scope: str
    tools: tuple[str, ...]
    resources: tuple[str, ...]  # URIs, templates included

    @property
    def key_variable(self) -> str | None:
        """The environment variable holding its key."""
        return None if self.api is None else API[self.api].key_variable


TOOLSETS: dict[Toolset, ToolsetFacts] = {
    "customer": ToolsetFacts(
        "customer",
        "lexey:customer",
        ("create_conversation", *_ADDING_MESSAGES, "get_conversation_messages", "run_test_suite"),
        (CONVERSATION_MESSAGES_URI,),
    ),
    "management": ToolsetFacts("management", "lexey:management", ("configure_org",), ()),
    "lexi": ToolsetFacts("lexi", "lexi", ("lexi_chat",), ()),
    "events": ToolsetFacts(None, "lexey:events", ("list_escalations",), (ESCALATIONS_URI,)),
}

#: Tool name -> its toolset.
TOOLSET_OF: dict[str, Toolset] = {tool: name for name, facts in TOOLSETS.items() for tool in facts.tools}

#: Tools that add messages to a customer conversation; the events feed announces their result's `conversation_id`.
CUSTOMER_MESSAGE_TOOLS = frozenset(_ADDING_MESSAGES)
