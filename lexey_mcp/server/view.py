"""The MCP Apps view (`io.modelcontextprotocol/ui`) of the tools whose result is a report (`ToolSpec.view`): one
`ui://` page a host that renders apps shows beside the call. For such a host, and only for it, the server renders the
report into the result's `_meta`; the page shows it. Every other host gets the result unchanged."""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import resources
from typing import Any

from mcp.server.apps import Apps, client_supports_apps
from mcp.server.mcpserver import Context

from ..toolsets import REPORT_VIEW_URI

#: Where in a result's `_meta` the rendered report travels to the view.
HTML_KEY = "lexey-mcp/html"
#: A tool's `_meta` that points hosts at the view.
TOOL_META = {"ui": {"resourceUri": REPORT_VIEW_URI}}


@functools.cache
def _page() -> str:
    """view.html, read once a process however many servers it builds, with the key the report travels under."""
    return resources.files(__package__).joinpath("view.html").read_text("utf-8").replace("__HTML_KEY__", HTML_KEY)


def view_extension() -> Apps:
    """The Apps extension serving the view (no external resource: a host's CSP forbids them)."""
    apps = Apps()
    apps.add_html_resource(
        REPORT_VIEW_URI,
        _page(),
        name="report",
        title="lexey-mcp report",
        description="A test suite's or customer scenario's report: each case's pass rate and each turn.",
        prefers_border=True,
    )
    return apps


def view_meta(ctx: Context[Any], render: Callable[[], str]) -> dict[str, Any] | None:
    """The result's `_meta` for the view: the rendered report when the client renders apps, else None."""
    return {HTML_KEY: render()} if client_supports_apps(ctx) else None
