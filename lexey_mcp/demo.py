"""`lexey-mcp demo`: the vendor's end-to-end workflow against the sandbox, through the MCP server itself.

Configure (business context, a knowledge article, escalation rules) → a customer scenario whose last
message escalates → the analytics review. Replies print as they stream (MCP progress notifications).
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import anyio
from mcp import Client

from . import interrupt
from .config import Settings
from .sandbox_delay import DEFAULT_DELAY
from .server import ServerOptions, build_server
from .toolsets import ESCALATIONS_URI

CONFIGURE = [
    "Our business is a SaaS company called Acme. We build project management tools for small teams.",
    "Add a knowledge article about pricing: Our plans are Free (up to 3 projects), Pro ($12/month, unlimited "
    "projects), and Enterprise (custom pricing).",
    "Add these escalation rules: always escalate if a customer mentions billing disputes, refund requests over "
    "$100, or legal issues.",
]
SCENARIO = [
    "Hi! How much does the Pro plan cost?",
    "I was charged twice and this is now a billing dispute. I want a person.",
]
REVIEW = "How have we performed over the last 7 days?"
EVENT_WAIT = 5.0
NEXT = """
Next:
  connect a host:   claude mcp add lexey-sandbox --transport stdio -- lexey-mcp --sandbox
  test your agent:  lexey-mcp test examples/suites/acme-support.yaml --sandbox
  escalations:      follow the escalation feed (docs/escalations.md)"""


class _StreamPrinter:
    """Prints each progress message's new text, so a reply appears as it grows."""

    def __init__(self) -> None:
        self._last = ""

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        if not message:
            return
        if message.startswith(self._last) and self._last:
            sys.stdout.write(message[len(self._last) :])
        else:
            sys.stdout.write("\n  " + message)
        sys.stdout.flush()
        self._last = message

    def finish(self, text: str) -> None:
        """The reply's last words, which arrive with the result (no progress is sent for them)."""
        if self._last and text.startswith(self._last):
            sys.stdout.write(text[len(self._last) :])
        elif not self._last and text:
            sys.stdout.write("\n  " + text)


async def _call(
    client: Client, tool: str, arguments: dict[str, Any], title: str, *, stream: bool = True
) -> dict[str, Any]:
    print(f"\n== {title}")
    printer = _StreamPrinter() if stream else None
    result = await client.call_tool(tool, arguments, progress_callback=printer)
    if result.is_error or result.structured_content is None:
        text = result.content[0].text if result.content and result.content[0].type == "text" else "no detail"
        raise RuntimeError(f"{tool} failed: {text}")
    structured: dict[str, Any] = result.structured_content
    if printer is not None:
        printer.finish(structured.get("text", ""))
        print()
    return structured


# Events: the sandbox's escalation webhook reaches this server's receiver and is pushed to the subscription.
async def _show_escalation_event(client: Client, escalations: Any) -> None:
    with anyio.move_on_after(EVENT_WAIT):
        event = await escalations.__anext__()
        print(f"\n== event: {event.uri} updated (the sandbox's signed webhook arrived)")
        listed = await _call(client, "list_escalations", {"limit": 1}, "list_escalations", stream=False)
        for item in listed["escalations"]:
            print(f"  conversation {item['conversation_id']} escalated: {item['reason']}")
        return
    print("\n== no escalation event arrived")


async def demo(settings: Settings, *, delay: float = DEFAULT_DELAY) -> int:
    server = build_server(settings, ServerOptions(sandbox=True, sandbox_delay=delay))
    async with Client(server) as client:
        conversation: str | None = None
        for step, instruction in enumerate(CONFIGURE, 1):
            args: dict[str, Any] = {"instruction": instruction}
            if conversation:
                args["conversation_id"] = conversation
            reply = await _call(client, "configure_org", args, f"configure {step}/3: {instruction[:60]}…")
            conversation = reply["conversation_id"]
        async with client.listen(resource_subscriptions=[ESCALATIONS_URI]) as escalations:
            scenario = await _call(
                client, "run_customer_scenario", {"messages": SCENARIO}, "customer scenario", stream=False
            )
            for message, turn in zip(SCENARIO, scenario["turns"], strict=True):
                print(f"  customer: {message}\n  agent:    {turn['text']}\n            ({_turn_state(turn)})")
            await _show_escalation_event(client, escalations)
        review = await _call(client, "configure_org", {"instruction": REVIEW}, f"review: {REVIEW}")
    escalated = bool(scenario["escalated"])
    complete = all(t["outcome"] == "complete" for t in scenario["turns"]) and review["outcome"] == "complete"
    print(f"\nescalated: {_yes(escalated)}; every reply complete: {_yes(complete)}")
    print(NEXT)
    return 0 if escalated and complete else 1


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _turn_state(turn: dict[str, Any]) -> str:
    """A turn's outcome and conversation status in words."""
    state = f"reply {turn['outcome']}"
    status = turn.get("conversation_status")
    return f"{state}; conversation {status}" if status else state


def run_demo(settings: Settings, *, delay: float = DEFAULT_DELAY) -> int:
    return interrupt.run(functools.partial(demo, settings, delay=delay))
