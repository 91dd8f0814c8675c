"""The tools, a module per toolset; `TOOLS` is the one table, in the order `tools/list` shows them."""

from __future__ import annotations

from ..registration import ToolSpec
from . import customer, escalations, lexi, management, qa

TOOLS: tuple[ToolSpec, ...] = (*customer.TOOLS, *qa.TOOLS, *management.TOOLS, *lexi.TOOLS, *escalations.TOOLS)
