"""What tests read from what the server sends: the tools it lists, a tool result's text, and any piece of a secret
found in a text."""

from __future__ import annotations

from collections.abc import Iterable

from mcp.types import CallToolResult, TextContent

from lexey_mcp.server import TOOLS

#: Every tool, as hosts see it (the host-config, Inspector and bundle tests check the same list).
TOOL_NAMES = {spec.name for spec in TOOLS}

#: A secret's slice this long found in a text counts as a leak (shorter ones occur by chance).
LEAK_CHARS = 8


def text_of(result: CallToolResult) -> str:
    """The result's text: its blocks, each a text block, joined."""
    assert result.content, "the result has no content"
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    assert len(texts) == len(result.content), f"not every block is text: {result.content}"
    return "".join(texts)


def leaks(text: str, secrets: Iterable[str], *, any_case: bool = False) -> list[str]:
    """Every `LEAK_CHARS`-character slice of a secret that appears in `text` (in any case, with `any_case`)."""
    fold = str.lower if any_case else str
    seen = fold(text)
    n = LEAK_CHARS
    return sorted({s[i : i + n] for s in secrets for i in range(len(s) - n + 1) if fold(s[i : i + n]) in seen})
