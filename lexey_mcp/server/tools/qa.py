"""The QA tool: an agent test suite run through the customer tools (and its setup through the management agent)."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Resolve
from mcp.types import CallToolResult
from pydantic import BeforeValidator, Field

from ...qa.html import html_report
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
from ..view import view_meta

#: An earlier result with every run's transcript is far longer than a suite; still under HTTP's 4 MiB request cap.
MAX_BASELINE_CHARS = 3_000_000
NO_MANAGEMENT = (
    "Nothing was sent: this suite has setup instructions, which change the organisation through the management agent, "
    "and this server does not expose the management tools (--toolsets). Remove the setup, or enable the management "
    "toolset."
)


async def run_test_suite(
    suite: Annotated[str, Field(min_length=1, max_length=MAX_CHAT_MESSAGE_CHARS, description="YAML or JSON text.")],
    ctx: Context[AppState],
    confirmation: Annotated[ElicitationResult[Confirmation], Resolve(confirm_setup)],
    repeat: Annotated[int, Field(ge=1, le=20, description="Runs per case.")] = 1,
    # `str`, not `str | None`: the SDK parses a JSON-looking string argument into an object unless its type is `str`;
    # a null is still "none", as for every other optional argument
    baseline: Annotated[
        str,
        BeforeValidator(lambda value: "" if value is None else value),
        Field(max_length=MAX_BASELINE_CHARS, description="Earlier result JSON to compare."),
    ] = "",
) -> Annotated[CallToolResult, SuiteReport]:
    """Run an agent QA suite: optional `setup` (configure_org instructions: strings or {say, expect}), then `cases`,
    each {name, turns: [{say, expect}], expect?} in a new conversation. expect keys: contains, not_contains
    (case-insensitive), matches (regex), escalated, outcome (complete|error|partial), max_seconds. Returns pass rates
    and failures with reply excerpts."""
    # lazy: the runner, its output, YAML and the event store: ~45-55 ms of a start (measured); most servers run no suite
    from ...events.marks import marking_test_runs
    from ...qa.compare import compare, read_baseline
    from ...qa.output import failure_line, run_label, tool_text
    from ...qa.parsing import parse_suite
    from ...qa.report import RunReport
    from ...qa.runner import run_suite
    from ...qa.suite import Suite

    async def on_run(done: int, total: int, case: str, index: int, run: RunReport) -> None:
        if done == total:  # the result follows at once and says it all (a progress sent right before it is lost)
            return
        verdict = "passed" if run.passed else f"FAILED: {failure_line(run.failures[0])}"
        message = redact(f"{run_label(case, index, repeat)} {verdict}", request_secrets(ctx.request_context))
        await ctx.report_progress(done, total, message[:PROGRESS_TEXT_CHARS])

    def read_arguments() -> tuple[Suite, dict[str, float] | None]:
        return parse_suite(suite, "suite"), read_baseline(baseline, "baseline") if baseline else None

    # An invalid suite (or baseline) is a tool error naming the line and the field. Read in a worker thread: a large
    # suite takes a second of pure Python (a baseline up to 3 MB of JSON), which the event loop, and with it every
    # other client's requests, must not wait for.
    parsed, rates = await anyio.to_thread.run_sync(read_arguments)
    if parsed.setup and not ctx.request_context.lifespan_context.management:
        return tool_error(NO_MANAGEMENT)
    refused = unconfirmed(confirmation, "this suite's setup")
    if refused is not None:
        return refused
    feed = ctx.request_context.lifespan_context.feed  # with the events toolset, the runs' escalations say so
    on_conversation = marking_test_runs(lambda: feed.store, parsed.name or "unnamed suite") if feed else None
    report = await run_suite(client_of(ctx), parsed, repeat=repeat, on_run=on_run, on_conversation=on_conversation)
    if rates is not None:
        report = compare(report, rates)
    # Rendered from the redacted report: in HTML a secret's characters are spelled as entities redaction cannot see.
    secrets = request_secrets(ctx.request_context)
    page = view_meta(ctx, lambda: html_report(report.redacted(secrets), parsed.name or "Test suite"))
    return result(report, tool_text(report, Fence()), page)


TOOLS = (
    ToolSpec(run_test_suite, "Run an agent QA suite", CONFIGURE, "customer", view=True),
)  # setup may change the org
