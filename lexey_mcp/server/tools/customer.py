"""The customer toolset: conversations with the support agent as a customer would have them, and their history
(tools and the history resource)."""

from __future__ import annotations

import time
from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.types import CallToolResult
from pydantic import Field

from ...errors import LexeyAPIError, LexeyError, LexeyInputError, NotFoundError
from ...models import ChatResult, Conversation, ConversationMessages, Schema
from ...qa.html import html_report
from ...qa.report import REQUEST_FAILED, CaseReport, Failure, RunReport, SuiteReport, TurnReport
from ...quoting import Fence, one_line
from ...redaction import redact
from ...toolsets import CONVERSATION_MESSAGES_URI
from ...validation import check_uuid
from ..parameters import ChatMessage, ConversationId, OptionalConversationId
from ..progress import progress
from ..registration import NEW_CONVERSATION, READ, ToolSpec
from ..rendering import chat_text, result
from ..state import AppState, client_of, request_secrets
from ..view import view_meta
from .chat import send

MAX_SCENARIO_MESSAGES = 20
MAX_HISTORY_PAGE = 500


class ScenarioError(Schema):
    """The turn that failed before its reply: the scenario stopped there."""

    turn: int = Field(description="1-based.")
    message: str
    status: int | None = Field(None, description="The HTTP status, when the upstream answered one.")
    code: str | None = None


class ScenarioResult(Schema):
    """A fresh customer conversation, one turn per message."""

    conversation_id: str
    turns: list[ChatResult] = Field(description="The completed turns, in order (in conversation_id).")
    escalated: bool
    error: ScenarioError | None = None


class HistoryPage(ConversationMessages):
    """Part of a conversation's history, oldest first."""

    total: int = Field(description="Messages in the conversation in all.")
    first_index: int = Field(description="Index of the first message here (0 = the oldest); pass as `before`.")


async def create_conversation(ctx: Context[AppState]) -> Annotated[CallToolResult, Conversation]:
    """Start a new customer conversation with the support agent and return its id."""
    cid = await client_of(ctx).customer.create_conversation()
    return result(Conversation(conversation_id=cid), f"New conversation {cid}")


async def send_customer_message(
    message: ChatMessage, ctx: Context[AppState], conversation_id: OptionalConversationId = None
) -> Annotated[CallToolResult, ChatResult]:
    """Send a message to the support agent as a customer; returns the whole reply, the outcome and whether the
    agent escalated to a human (conversation_status "escalated")."""
    reply = await send(client_of(ctx).customer, message, conversation_id, ctx)
    return result(reply, chat_text("Support agent reply", reply, Fence()))


async def get_conversation_messages(
    conversation_id: ConversationId,
    ctx: Context[AppState],
    limit: Annotated[int, Field(ge=1, le=MAX_HISTORY_PAGE)] = 50,
    before: Annotated[int | None, Field(ge=0, description="Only messages before this index (0 = oldest).")] = None,
) -> Annotated[CallToolResult, HistoryPage]:
    """Read a customer conversation's history (role, content, createdAt), oldest first: the latest `limit`
    messages, or those before index `before`, and how many there are in all."""
    messages = await client_of(ctx).customer.get_messages(conversation_id)
    total = len(messages)
    end = total if before is None else min(before, total)
    first = max(0, end - limit)
    page = HistoryPage(conversation_id=conversation_id, messages=messages[first:end], total=total, first_index=first)
    shown = f"messages {first + 1}-{end} of {total}" if end > first else f"no messages before index {end} of {total}"
    older = f"; older ones: before={first}" if first > 0 else ""
    lines = "\n".join(f"{m.role}: {m.content}" for m in page.messages)
    return result(page, f"{conversation_id}: {shown}{older}\n{Fence()(lines)}")


async def run_customer_scenario(
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_SCENARIO_MESSAGES)],
    ctx: Context[AppState],
) -> Annotated[CallToolResult, ScenarioResult]:
    """Test the support agent: a fresh conversation, each message sent in turn. Returns every reply and whether
    it escalated; use after configure_org to check knowledge and escalation rules. A turn that fails before its
    reply stops the scenario; the finished turns come back with its error."""
    api = client_of(ctx).customer
    cid = await api.create_conversation()
    turns: list[ChatResult] = []
    seconds: list[float] = []  # each turn's, for the report view
    error: ScenarioError | None = None
    on_text = progress(ctx)
    for i, message in enumerate(messages, 1):
        if on_text is not None:
            await on_text.begin(f"turn {i}/{len(messages)}: {message[:200]}")
        try:
            sent = time.monotonic()
            turns.append(await api.send_message(cid, message, on_text=on_text))
            seconds.append(time.monotonic() - sent)
        except LexeyError as exc:
            status, code = (exc.status, exc.code) if isinstance(exc, LexeyAPIError) else (None, None)
            error = ScenarioError(turn=i, message=str(exc), status=status, code=code)
            break
    escalated = any(_escalates(turn) for turn in turns)
    # A turn's conversation is the scenario's: said once, not per turn.
    shown = [turn.model_copy(update={"conversation_id": None}) for turn in turns]
    scenario = ScenarioResult(conversation_id=cid, turns=shown, escalated=escalated, error=error)
    fence = Fence()
    blocks = [chat_text(f"turn {i}", turn, fence, conversation=False) for i, turn in enumerate(turns, 1)]
    if error is not None:
        blocks.append(f"[{one_line(f'turn {error.turn} failed; scenario stopped: {error.message}')}]")
    text = f"Scenario in {cid}; escalated: {escalated}\n" + "\n".join(blocks)
    # The page (only for hosts with the view) is rendered redacted: HTML spells a secret's characters as entities.
    secrets = request_secrets(ctx.request_context)
    page = view_meta(
        ctx, lambda: scenario_page([redact(m, secrets) for m in messages], seconds, scenario.redacted(secrets))
    )
    return result(scenario, text, page)


def _escalates(turn: ChatResult) -> bool:
    """The conversation is escalated after `turn` (its last status, or an escalated status on the way)."""
    return turn.conversation_status == "escalated" or "escalated" in turn.status_events


def scenario_page(messages: list[str], seconds: list[float], scenario: ScenarioResult) -> str:
    """The report view's page of a scenario: the one run of a one-case report, each turn with the customer's message
    and the reply; a turn that did not complete, or failed before its reply, fails it."""
    failures = [
        Failure(turn=i, expectation="outcome", detail=f"outcome {turn.outcome}")
        for i, turn in enumerate(scenario.turns, 1)
        if turn.outcome != "complete"
    ]
    if scenario.error is not None:
        failures.append(Failure(turn=scenario.error.turn, expectation=REQUEST_FAILED, detail=scenario.error.message))
    escalated = False
    transcript = []
    for said, took, turn in zip(messages, seconds, scenario.turns, strict=False):
        escalated = escalated or _escalates(turn)
        transcript.append(TurnReport(say=said, reply=turn.text, seconds=round(took, 3), escalated=escalated))
    run = RunReport(
        passed=not failures,
        conversation_id=scenario.conversation_id,
        seconds=round(sum(seconds), 3),
        failures=failures,
        turns=transcript,
    )
    case = CaseReport(name="scenario", passed=run.passed, pass_rate=float(run.passed), flaky=False, runs=[run])
    return html_report(SuiteReport(name=None, passed=run.passed, cases=[case]), "Customer scenario")


TOOLS = (
    ToolSpec(create_conversation, "Create customer conversation", NEW_CONVERSATION, "customer"),
    ToolSpec(send_customer_message, "Send message as a customer", NEW_CONVERSATION, "customer", adds_messages=True),
    ToolSpec(get_conversation_messages, "Read conversation history", READ, "customer"),
    ToolSpec(
        run_customer_scenario,
        "Run a customer test scenario",
        NEW_CONVERSATION,
        "customer",
        adds_messages=True,
        view=True,
    ),
)


def add_resources(server: MCPServer[AppState]) -> None:
    """The conversation history resource."""

    @server.resource(
        CONVERSATION_MESSAGES_URI,
        name="conversation_messages",
        title="Customer conversation history",
        description="A customer conversation's messages as JSON (role, content, createdAt).",
        mime_type="application/json",
    )
    async def conversation_messages(conversation_id: str, ctx: Context[AppState]) -> str:
        try:
            check_uuid(conversation_id)
            messages = await client_of(ctx).customer.get_messages(conversation_id)
        except (LexeyInputError, NotFoundError) as exc:
            raise ResourceNotFoundError(str(exc)) from None
        except LexeyError as exc:
            raise ResourceError(str(exc)) from None
        return ConversationMessages(conversation_id=conversation_id, messages=messages).model_dump_json(indent=2)
