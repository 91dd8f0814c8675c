"""The toolset table is what the server offers: each toolset alone serves exactly its tools and resources."""

from __future__ import annotations

import pytest
from mcp import Client

from lexey_mcp.server import TOOLS, ServerOptions, build_server
from lexey_mcp.toolsets import CUSTOMER_MESSAGE_TOOLS, TOOLSETS, Toolset
from lexey_mcp.vendor import APIS
from tests.streams import settings

pytestmark = pytest.mark.anyio


def test_every_tool_of_the_server_is_in_exactly_one_toolset() -> None:
    names = [spec.fn.__name__ for spec in TOOLS]
    listed = [tool for facts in TOOLSETS.values() for tool in facts.tools]
    assert sorted(names) == sorted(listed)
    assert len(set(listed)) == len(listed)
    assert CUSTOMER_MESSAGE_TOOLS.issubset(TOOLSETS["customer"].tools)


def test_each_api_has_its_toolset_and_every_scope_is_distinct() -> None:
    assert sorted(f.api for f in TOOLSETS.values() if f.api is not None) == sorted(APIS)
    assert len({f.scope for f in TOOLSETS.values()}) == len(TOOLSETS)


@pytest.mark.parametrize("toolset", list(TOOLSETS))
async def test_a_toolset_alone_serves_its_tools_and_resources(toolset: Toolset) -> None:
    async with Client(build_server(settings(), ServerOptions(toolsets=[toolset]))) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert tools == set(TOOLSETS[toolset].tools)
    assert resources | templates == set(TOOLSETS[toolset].resources)
