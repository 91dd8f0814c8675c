"""How a tool body becomes an MCP tool: its entry in a toolset's table (`ToolSpec`), the one error mapping, and the
server class that checks arguments before any tool or prompt runs, answering in our voice what the SDK would word
itself (a pydantic dump, "Error executing tool …", "Internal server error")."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp import MCPError
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import INVALID_PARAMS, CallToolResult, GetPromptResult, InputRequiredResult, ToolAnnotations
from mcp.types import Tool as MCPTool

from .. import compat
from ..arguments import check_arguments, compact_schema, strict
from ..errors import LexeyError
from ..tool_errors import tool_error
from ..toolsets import Toolset
from . import output_schemas
from .state import AppState
from .view import TOOL_META

logger = logging.getLogger("lexey_mcp.server")

NEW_CONVERSATION = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)
READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
READ_LOCAL = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
CONFIGURE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True)


@dataclass(frozen=True)
class ToolSpec:
    """A tool: its body (named as the tool; returns a `CallToolResult` or raises `LexeyError`; its docstring is the
    description), how it is shown, and its toolset (whose key it uses and the OAuth scope it needs: `toolsets.py`)."""

    fn: Callable[..., Any]
    title: str
    annotations: ToolAnnotations
    toolset: Toolset
    #: It adds messages to the customer conversation in its result's `conversation_id` (the events feed announces it).
    adds_messages: bool = False
    #: Its result is a report hosts that render MCP Apps show in the report view (`view.py`).
    view: bool = False

    @property
    def name(self) -> str:
        return self.fn.__name__

    def add_to(self, server: MCPServer[AppState]) -> None:
        # One paragraph: a docstring's line breaks and indentation are not for the LLM.
        description = " ".join((self.fn.__doc__ or "").split())
        meta = TOOL_META if self.view else None
        fn = mapped_errors(self.fn)
        server.add_tool(  # unstructured here: the output schema is attached from the committed file (output_schemas)
            fn,
            title=self.title,
            description=description,
            annotations=self.annotations,
            meta=meta,
            structured_output=False,
        )
        tool = compat.tool_by_name(server, self.name)
        assert tool is not None
        output_schemas.attach(tool, output_schemas.result_model(fn))


def mapped_errors(fn: Callable[..., Awaitable[CallToolResult]]) -> Callable[..., Awaitable[CallToolResult]]:
    """The one error mapping, applied to every tool at registration: each failure we know of becomes a readable
    tool error. The signature (arguments, context, resolvers) stays the tool's own."""

    @functools.wraps(fn)
    async def tool(*args: Any, **kwargs: Any) -> CallToolResult:
        try:
            return await fn(*args, **kwargs)
        except LexeyError as exc:
            logger.info("tool error: %s", exc)
            return tool_error(str(exc))

    # Resolved once here: the SDK reads a tool's signature and type hints three times while registering it, and
    # each read would evaluate every annotation string of the tool's module again (`from __future__ import
    # annotations`).
    signature = inspect.signature(fn, eval_str=True)
    tool.__signature__ = signature  # type: ignore[attr-defined]
    tool.__annotations__ = {n: p.annotation for n, p in signature.parameters.items() if p.annotation is not p.empty}
    if signature.return_annotation is not signature.empty:
        tool.__annotations__["return"] = signature.return_annotation
    return tool


class LexeyServer(MCPServer[AppState]):
    """The SDK's server with arguments checked before a tool or prompt runs (see `arguments.py`)."""

    async def list_tools(self) -> list[MCPTool]:
        """The tools as a model reads them: every input schema compacted (`compact_schema`), in this one place."""
        tools = await super().list_tools()
        return [tool.model_copy(update={"input_schema": compact_schema(tool.input_schema)}) for tool in tools]

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppState, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        tool = compat.tool_by_name(self, name)  # the SDK offers no public way to a tool's argument model
        if tool is not None:
            accepted = set(tool.parameters.get("properties", {}))
            problem = check_arguments(name, arguments, accepted, strict(tool.fn_metadata))
            if problem is not None:
                return tool_error(problem)
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            # A tool body never raises ToolError (it raises LexeyError, mapped at registration): one caused by a
            # ToolError comes from a resolver, and the only resolver reads the answer to --confirm-changes.
            if isinstance(exc.__cause__, ToolError):
                return tool_error(
                    "Nothing was sent: the client's answer to the confirmation could not be read "
                    "(it must be an accept with send: true or false, a decline or a cancel)."
                )
            raise

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[AppState, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        prompts = {prompt.name: prompt for prompt in await self.list_prompts()}
        if name not in prompts:
            raise MCPError(INVALID_PARAMS, f"There is no prompt {name!r}; prompts: {', '.join(sorted(prompts))}.")
        accepted = {argument.name for argument in prompts[name].arguments or []}
        problem = check_arguments(name, arguments or {}, accepted, lambda _: None)  # every value is a string
        if problem is not None:
            raise MCPError(INVALID_PARAMS, problem)
        return await super().get_prompt(name, arguments, context)
