"""The toolset table is what the server offers: each toolset alone serves exactly its tools and resources."""

from __future__ import annotations

import pytest
from mcp import Client

from lexey_mcp.server import TOOLS, ServerOptions, build_server
from lexey_mcp.server.tools import MESSAGE_ADDING_TOOLS, TOOLSET_OF
from lexey_mcp.toolsets import TOOLSETS, Toolset
from lexey_mcp.vendor import APIS
from tests.streams import settings

pytestmark = pytest.mark.anyio


def test_every_tool_names_a_toolset_of_the_table_and_every_toolset_has_tools() -> None:
    names = [spec.name for spec in TOOLS]
    assert len(set(names)) == len(names)
    assert set(TOOLSET_OF.values()) == set(TOOLSETS)
    assert {"send_customer_message", "run_customer_scenario"} == MESSAGE_ADDING_TOOLS
    assert {TOOLSET_OF[name] for name in MESSAGE_ADDING_TOOLS} == {"customer"}


def test_each_api_has_its_toolset_and_every_scope_is_distinct() -> None:
    assert sorted(f.api for f in TOOLSETS.values() if f.api is not None) == sorted(APIS)
    assert len({f.scope for f in TOOLSETS.values()}) == len(TOOLSETS)


@pytest.mark.parametrize("toolset", list(TOOLSETS))
async def test_a_toolset_alone_serves_its_tools_and_resources(toolset: Toolset) -> None:
    async with Client(build_server(settings(), ServerOptions(toolsets=[toolset]))) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert tools == {name for name, owner in TOOLSET_OF.items() if owner == toolset}
    assert resources | templates == set(TOOLSETS[toolset].resources)
