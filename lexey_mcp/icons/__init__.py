"""The server's icon, drawn once in `lexey-mcp.svg`. The PNGs are made from it and committed, so nobody needs the
tool: `lexey-mcp.png` (128 px; `rsvg-convert -w 128 -h 128 lexey-mcp.svg -o lexey-mcp.png`), which the server sends
with the SVG in its implementation info, and `lexey-mcp-512.png` (the size Claude Desktop recommends), which the
bundle's manifest shows."""

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
