"""The tools, a module per toolset; `TOOLS` is the one table, in the order `tools/list` shows them."""

from __future__ import annotations

from ...toolsets import Toolset
from ..registration import ToolSpec
from . import customer, escalations, lexi, management, qa

TOOLS: tuple[ToolSpec, ...] = (*customer.TOOLS, *qa.TOOLS, *management.TOOLS, *lexi.TOOLS, *escalations.TOOLS)

#: Tool name -> its toolset.
TOOLSET_OF: dict[str, Toolset] = {spec.name: spec.toolset for spec in TOOLS}

#: Tools that add messages to a customer conversation; the events feed announces their result's `conversation_id`.
MESSAGE_ADDING_TOOLS = frozenset(spec.name for spec in TOOLS if spec.adds_messages)
