"""Each tool's output schema, derived from its result model once, not at every start.

A tool returns `Annotated[CallToolResult, Model]`. Left to itself, the SDK derives `Model`'s JSON schema when the
tool is registered, which builds the model's validator too: the largest part of what registering the eight tools
costs a start, while a host waits (BENCHMARKS.md, cold start). So `output_schemas.json` holds each result model's
schema exactly as the SDK derives it, the tool is registered as unstructured, and then `attach` gives it its model
and that schema (the SDK reads `FuncMetadata`'s fields live: the result is still validated against the model, on
each call). The models build their validators on first use (`models.Schema`'s `defer_build`).

The file is derived, never edited: `pytest --update-snapshots` rewrites it, and tests/server/test_output_schemas.py
fails when it differs from what the SDK derives from the models now.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from importlib import resources
from typing import Annotated, Any, get_args, get_origin

from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult
from pydantic import BaseModel

FILE = "output_schemas.json"


def result_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """The model of a tool body's result: `Model` of its `Annotated[CallToolResult, Model]` return annotation (the
    annotations already evaluated, as `registration.mapped_errors` leaves them)."""
    returns = fn.__annotations__.get("return")
    args = get_args(returns) if get_origin(returns) is Annotated else ()
    if len(args) != 2 or args[0] is not CallToolResult or not issubclass(args[1], BaseModel):
        raise TypeError(f"{fn.__name__} must return Annotated[CallToolResult, <a result model>], not {returns!r}")
    model: type[BaseModel] = args[1]
    return model


def key(model: type[BaseModel]) -> str:
    """Where `model`'s schema is in the file: its import path."""
    return f"{model.__module__}.{model.__qualname__}"


@functools.cache
def committed() -> dict[str, dict[str, Any]]:
    """The schemas in the file, read once a process however many servers it builds."""
    schemas: dict[str, dict[str, Any]] = json.loads(resources.files(__package__).joinpath(FILE).read_text("utf-8"))
    return schemas


def attach(tool: Tool, model: type[BaseModel]) -> None:
    """Make `tool` (registered as unstructured) structured: its result validated against `model`, and `model`'s
    committed schema published as its `outputSchema`. Before anything reads `tool.output_schema`: the SDK caches it."""
    schema = committed().get(key(model))
    if schema is None:
        raise LookupError(f"{FILE} has no schema for {key(model)} (tool {tool.name}): run pytest --update-snapshots")
    tool.fn_metadata.output_model = model
    tool.fn_metadata.output_schema = schema
