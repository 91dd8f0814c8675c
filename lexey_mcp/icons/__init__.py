"""The server's icon, drawn once in `lexey-mcp.svg`; `lexey-mcp.png` is made from it (`rsvg-convert -w 128 -h 128
lexey-mcp.svg -o lexey-mcp.png`) and committed, so nobody needs the tool. The MCP server sends both in its
implementation info, and the bundle's manifest (bundle/manifest.json) shows the PNG."""

from __future__ import annotations

import base64
from importlib import resources

from mcp.types import Icon

#: file, MIME type, sizes (MCP `Icon.sizes`)
ICON_FILES = (("lexey-mcp.svg", "image/svg+xml", "any"), ("lexey-mcp.png", "image/png", "128x128"))


def server_icons() -> list[Icon]:
    """The icons inline, as data: URIs: a local server has no web address to serve them from."""
    folder = resources.files(__package__)
    return [
        Icon(
            src=f"data:{mime};base64,{base64.b64encode((folder / name).read_bytes()).decode('ascii')}",
            mime_type=mime,
            sizes=[size],
        )
        for name, mime, size in ICON_FILES
    ]
