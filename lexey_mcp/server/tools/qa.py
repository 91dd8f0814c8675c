"""The QA tool: an agent test suite run through the customer tools (and its setup through the management agent)."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Resolve
from mcp.types import CallToolResult
from pydantic import Field

from ...qa.report import SuiteReport
from ...quoting import Fence
from ...redaction import redact
from ...tool_errors import tool_error
from ..consent import Confirmation, confirm_setup, unconfirmed
from ..parameters import MAX_CHAT_MESSAGE_CHARS
from ..progress import PROGRESS_TEXT_CHARS
from ..registration import CONFIGURE, ToolSpec
from ..rendering import result
from ..state import AppState, client_of, request_secrets
from ..view import render, view_meta

NO_MANAGEMENT = (
    "Nothing was sent: this suite has setup instructions, which change the organisation through the management agent, "
    "and this server does not expose the management tools (--toolsets). Remove the setup, or enable the management "
    "toolset."
)


async def run_test_suite(
    suite: Annotated[str, Field(min_length=1, max_length=MAX_CHAT_MESSAGE_CHARS, description="YAML or JSON text.")],
    ctx: Context[AppState],
    confirmation: Annotated[ElicitationResult[Confirmation], Resolve(confirm_setup)],
    repeat: Annotated[int, Field(ge=1, le=20, description="Runs per case, for a pass rate.")] = 1,
) -> Annotated[CallToolResult, SuiteReport]:
    """Run an agent QA suite: optional `setup` (configure_org instructions, in order), then `cases`, each
    {name, turns: [{say, expect}], expect?} run in a fresh customer conversation. expect keys: contains,
    not_contains (strings, case-insensitive), matches (regex), escalated (bool), outcome (complete|error|partial),
    max_seconds. Returns pass/fail and pass rate per case, each failure with the reply excerpt."""
    # lazy: the runner, its output and YAML cost a start ~55 ms (measured), and most servers never run a suite
    from ...qa.output import failure_line, run_label, summary_table
    from ...qa.report import RunReport
    from ...qa.runner import excerpt, run_suite
    from ...qa.suite import parse_suite

    async def on_run(done: int, total: int, case: str, index: int, run: RunReport) -> None:
        if done == total:  # the result follows at once and says it all (a progress sent right before it is lost)
            return
        verdict = "passed" if run.passed else f"FAILED: {failure_line(run.failures[0])}"
        message = redact(f"{run_label(case, index, repeat)} {verdict}", request_secrets(ctx.request_context))
        await ctx.report_progress(done, total, message[:PROGRESS_TEXT_CHARS])

    # An invalid suite is a tool error naming the line and the field. Parsed in a worker thread: a large suite takes
    # a second of pure Python, which the event loop (every other client's requests) must not wait for.
    parsed = await anyio.to_thread.run_sync(parse_suite, suite, "suite")
    if parsed.setup and not ctx.request_context.lifespan_context.management:
        return tool_error(NO_MANAGEMENT)
    refused = unconfirmed(confirmation, "this suite's setup")
    if refused is not None:
        return refused
    report = await run_suite(client_of(ctx), parsed, repeat=repeat, on_run=on_run)
    table = summary_table(report, width=10_000)  # whole lines: a model reads them
    meta = view_meta(ctx, lambda: render(report))
    if not report.setup:
        return result(report, table, meta)
    replies = "\n".join(f"{i}. {excerpt(reply)}" for i, reply in enumerate(report.setup, 1))
    setup = f"Setup: {len(report.setup)} instructions sent, each complete; the management agent replied:"
    return result(report, f"{setup}\n{Fence()(replies)}\n\n{table}", meta)


TOOLS = (
    ToolSpec(run_test_suite, "Run an agent QA suite", CONFIGURE, "customer", view=True),
)  # setup may change the org
