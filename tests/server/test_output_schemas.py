"""The tools' output schemas come from the committed `lexey_mcp/server/output_schemas.json`, not derived at start-up:
the file must hold what the SDK derives from the result models now, and a tool must publish and validate exactly as
if the SDK had derived them itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent
from pydantic import ValidationError

from lexey_mcp import compat
from lexey_mcp.config import Settings
from lexey_mcp.models import ChatResult, Schema
from lexey_mcp.server import TOOLS, build_server
from lexey_mcp.server import output_schemas as module
from lexey_mcp.server.registration import mapped_errors
from tests.processes import clean_env

FILE = Path(module.__file__).with_name(module.FILE)


def derived_by_the_sdk() -> dict[str, Tool]:
    """Each tool as the SDK registers it when left to derive its output schema itself."""
    return {spec.name: Tool.from_function(mapped_errors(spec.fn)) for spec in TOOLS}


def test_the_committed_schemas_are_what_the_sdk_derives_now(request: pytest.FixtureRequest) -> None:
    schemas = {
        module.key(module.result_model(tool.fn)): tool.fn_metadata.output_schema
        for tool in derived_by_the_sdk().values()
    }
    now = json.dumps(dict(sorted(schemas.items())), indent=2, ensure_ascii=False) + "\n"
    if request.config.getoption("--update-snapshots"):
        FILE.write_text(now, encoding="utf-8")
    assert FILE.read_text(encoding="utf-8") == now, f"{module.FILE} is out of date: run pytest --update-snapshots"


def test_every_tool_publishes_and_validates_as_the_sdk_would() -> None:
    server = build_server(Settings(_env_file=None))
    sdk = derived_by_the_sdk()
    assert len(sdk) == 8
    for name, derived in sdk.items():
        tool = compat.tool_by_name(server, name)
        assert tool is not None
        registered = tool.fn_metadata
        assert derived.fn_metadata.output_schema is not None, name
        assert registered.output_schema == derived.fn_metadata.output_schema, name
        assert registered.output_model is derived.fn_metadata.output_model, name
        assert registered.wrap_output is derived.fn_metadata.wrap_output is False, name
        assert tool.output_schema == derived.output_schema, name


def test_a_result_that_does_not_fit_its_model_is_still_refused() -> None:
    """The tool is registered as unstructured and made structured afterwards: its results are validated all the
    same."""
    tool = compat.tool_by_name(build_server(Settings(_env_file=None)), "send_customer_message")
    assert tool is not None
    text = [TextContent(type="text", text="hi")]
    fits = ChatResult(text="hi", conversation_id="c", outcome="complete").structured()
    converted = tool.fn_metadata.convert_result(CallToolResult(content=text, structured_content=fits))
    assert isinstance(converted, CallToolResult)
    assert converted.structured_content == fits
    with pytest.raises(ValidationError, match="outcome"):
        tool.fn_metadata.convert_result(CallToolResult(content=text, structured_content={**fits, "outcome": "maybe"}))


def test_a_model_missing_from_the_file_is_named_with_the_fix() -> None:
    class Unlisted(Schema):
        value: int

    tool = Tool.from_function(mapped_errors(TOOLS[0].fn), structured_output=False)
    with pytest.raises(LookupError, match=r"no schema for .*Unlisted \(tool create_conversation\): run pytest --upd"):
        module.attach(tool, Unlisted)


def test_a_tool_must_say_its_result_model() -> None:
    async def bare(text: str) -> CallToolResult:
        return CallToolResult(content=[])

    async def plain(text: str) -> ChatResult:
        raise AssertionError

    for fn, returns in ((bare, CallToolResult), (plain, ChatResult)):
        fn.__annotations__["return"] = returns  # evaluated, as registration leaves them
        with pytest.raises(TypeError, match=rf"^{fn.__name__} must return Annotated\[CallToolResult, <a result mod"):
            module.result_model(fn)


# In a fresh interpreter: build the server with every toolset, then list the result models whose validators exist.
_BUILT_PROBE = """
import json, sys
from lexey_mcp.config import Settings
from lexey_mcp.models import Schema
from lexey_mcp.server import build_server
build_server(Settings(_env_file=None))
def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)
print(json.dumps(sorted({c.__name__ for c in subclasses(Schema) if c.__pydantic_complete__})))
"""


@pytest.mark.e2e
def test_a_start_builds_no_result_model() -> None:
    """What keeps cold start short (BENCHMARKS.md §4): a result model's validator is built on first use. (A model a
    tool takes as an argument, lexi_chat's context, is built into that tool's argument model, not on its own.)"""
    done = subprocess.run(
        [sys.executable, "-c", _BUILT_PROBE], capture_output=True, text=True, env=clean_env(), timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
