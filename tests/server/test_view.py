"""The MCP Apps view of a report: the tools point at it, hosts that render apps get the report rendered for it, others
get today's result, and in a real browser the view shows a real result handed over by the official host bridge."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import CallToolResult, TextResourceContents

from lexey_mcp.sandbox import Sandbox
from lexey_mcp.server import build_server
from lexey_mcp.server.view import HTML_KEY
from lexey_mcp.toolsets import REPORT_VIEW_URI
from tests.browser import DevTools, bundle
from tests.conftest import sandbox_settings_for

pytestmark = pytest.mark.anyio

SUITE = (Path(__file__).resolve().parents[2] / "examples" / "suites" / "acme-support.yaml").read_text()
#: No `matches`: a regex runs in a process of its own (`qa/matching.py`), and these tests stay in memory.
SMALL_SUITE = """
name: small
cases:
  - name: business hours
    turns: [{say: "What are your business hours?", expect: {contains: ["9"]}}]
  - name: a human
    turns: [{say: "I want to speak to a human, now.", expect: {escalated: true}}]
"""
SCENARIO = {"messages": ["What are your business hours?", "I want to speak to a human, now."]}
APPS = [advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})]
#: Anything a page could fetch from elsewhere: a host's CSP refuses it, so the view must have none.
EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?(?!#)[^"'\s>]|url\(|@import|https?://""", re.IGNORECASE)


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def view_page(client: Client) -> str:
    read = await client.read_resource(REPORT_VIEW_URI)
    (page,) = read.contents
    assert isinstance(page, TextResourceContents)
    assert page.mime_type == APP_MIME_TYPE
    return page.text


async def test_the_report_tools_point_at_a_self_contained_view(sandbox: Sandbox, mode: str) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox)), mode=mode, extensions=APPS) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        page = await view_page(client)
    pointing = {name for name, tool in tools.items() if (tool.meta or {}).get("ui")}
    assert pointing == {"run_test_suite", "run_customer_scenario"}
    assert all(tools[name].meta == {"ui": {"resourceUri": REPORT_VIEW_URI}} for name in pointing)
    assert HTML_KEY in page
    assert "__HTML_KEY__" not in page
    assert EXTERNAL.findall(page) == []


async def test_a_host_without_apps_gets_the_result_unchanged(sandbox: Sandbox, mode: str) -> None:
    results: dict[str, list[CallToolResult]] = {}
    for name, extensions in (("plain", None), ("apps", APPS)):
        async with Client(build_server(sandbox_settings_for(sandbox)), mode=mode, extensions=extensions) as client:
            results[name] = [
                await client.call_tool("run_customer_scenario", SCENARIO),
                await client.call_tool("run_test_suite", {"suite": SMALL_SUITE}),
            ]
    scenario_html, suite_html = (result.meta[HTML_KEY] for result in results["apps"] if result.meta)
    assert "business hours" in scenario_html.lower()
    assert all(case in suite_html for case in ("business hours", "a human"))
    for plain, apps in zip(results["plain"], results["apps"], strict=True):
        assert not plain.is_error
        assert not apps.is_error
        assert plain.meta is None or HTML_KEY not in plain.meta
        assert apps.meta is not None
        assert isinstance(apps.meta.pop(HTML_KEY), str)
        assert apps.meta == (plain.meta or {})  # the protocol's own _meta (2026: serverInfo) either way
        # The same result but for ids and timings, which differ from run to run.
        assert scrub(plain.model_dump(exclude={"meta"})) == scrub(apps.model_dump(exclude={"meta"}))


def scrub(value: Any) -> str:
    """`value` as JSON with UUIDs, request ids, nonces and seconds replaced: what two runs of the same calls share."""
    text = json.dumps(value, sort_keys=True)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", text)
    text = re.sub(r"<<<(end )?reply [0-9a-f]+>>>", r"<<<\1reply N>>>", text)
    text = re.sub(r"req_[0-9a-f]+", "req_<id>", text)
    text = re.sub(r'("[a-z_]*(?:seconds|duration|ms|at)": )[0-9.e+-]+', r"\1<t>", text)
    return re.sub(r"\b\d+\.\d+\b", "<t>", text)  # the text's seconds (median s, durations)


HOST = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>test host</title></head>
<body style="margin:0">
<iframe id="view" sandbox="allow-scripts" style="width:100%;height:600px;border:0"></iframe>
<script>__BRIDGE__</script>
<script>
const iframe = document.getElementById("view");
const bridge = new Host.AppBridge(null, { name: "lexey-mcp test host", version: "1" }, {});
bridge.onsizechange = ({ height }) => { if (height) iframe.style.height = height + "px"; };
bridge.oninitialized = async () => {
  await bridge.sendToolInput({ arguments: __INPUT__ });
  await bridge.sendToolResult(__RESULT__);
};
bridge.connect(new Host.PostMessageTransport(iframe.contentWindow, iframe.contentWindow)).then(() => {
  iframe.srcdoc = __VIEW__;
});
</script>
</body></html>
"""


def script_json(value: Any) -> str:
    """`value` as a JavaScript literal safe inside <script> (no `</script>` can close it)."""
    return json.dumps(value).replace("<", "\\u003c")


@pytest.mark.e2e
async def test_the_view_shows_a_real_suite_report_in_chromium_through_the_official_bridge(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    async with Client(build_server(sandbox_settings_for(sandbox)), extensions=APPS) as client:
        arguments = {"suite": SUITE}
        result = await client.call_tool("run_test_suite", arguments)
        page = await view_page(client)
    assert not result.is_error
    bridge = bundle(
        'export { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";',
        tmp_path / "bridge.js",
        "Host",
    )
    host = tmp_path / "host.html"
    host.write_text(
        HOST.replace("__BRIDGE__", bridge.replace("</script", "<\\/script"))
        .replace("__INPUT__", script_json(arguments))
        .replace("__RESULT__", script_json(result.model_dump(by_alias=True, mode="json", exclude_none=True)))
        .replace("__VIEW__", script_json(page))
    )
    chromium = DevTools(host, tmp_path / "profile")
    try:
        phone = {"width": 420, "height": 900, "deviceScaleFactor": 1, "mobile": True}
        chromium.send("Emulation.setDeviceMetricsOverride", session=True, **phone)
        chromium.frames()
        shown = chromium.in_any_frame(
            "document.querySelector('#report[data-shown]') && document.getElementById('report').innerText"
        )
        image = chromium.screenshot(tmp_path / "view.png")
    finally:
        chromium.close()
    assert all(case in shown for case in ("pricing", "business hours"))
    assert image.width == 420
    assert len(set(image.pixels)) > 16  # more than a blank page: text, marks, boxes
