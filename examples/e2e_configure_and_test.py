#!/usr/bin/env python3
"""Configure a Lexey support agent, then test it as a customer would: the way an AI agent does it, through MCP.

    python examples/e2e_configure_and_test.py                        # the embedded sandbox: no keys needed
    python examples/e2e_configure_and_test.py --server "lexey-mcp"   # your org (keys from the environment)

The script starts the server as a host does (a stdio subprocess; by default `python -m lexey_mcp --sandbox`) and
talks to it with the official `mcp.Client`:

1. configure_org: set the business context, add a knowledge article, add an escalation rule;
2. run_customer_scenario: a question the article answers, then a message the rule must escalate;
3. get_conversation_messages and the `lexey://conversations/{id}/messages` resource: the history.

It checks every answer and the escalation, and exits 1 listing the checks that failed. Against a real org
(`--server lexey-mcp` without `--sandbox`) it really changes that org's configuration: use a test org.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import TextContent, TextResourceContents

from lexey_mcp.server import TOOLS as SERVER_TOOLS

TOOLS = {spec.name for spec in SERVER_TOOLS}  # the server's table: what it must offer
CONTEXT = "Our business is Northwind Bikes, an online shop that sells and repairs city bikes."
ARTICLE = (
    "Add a knowledge article about returns: You can return any bike within 30 days of delivery for a full "
    "refund, and the return label is free."
)
RULE = "Always escalate if a customer mentions a safety incident or legal action."
QUESTION = "Hi, what is your returns policy?"
ESCALATE = "My brakes failed on the first ride and I fell. This is a safety incident."


class Checks:
    """Collects failed expectations instead of stopping at the first one."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def expect(self, ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAILED'}] {what}")
        if not ok:
            self.failed.append(what)


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call a tool; a tool error (isError) stops the run with its text, which says what to fix."""
    result = await client.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        text = " ".join(b.text for b in result.content if isinstance(b, TextContent))
        raise SystemExit(f"{tool} failed: {text}")
    structured: dict[str, Any] = result.structured_content
    return structured


async def run(server: list[str]) -> int:
    # Pass our environment on: the SDK otherwise gives a stdio server only HOME, PATH and a few more, no keys.
    params = StdioServerParameters(command=server[0], args=server[1:], env=dict(os.environ))
    checks = Checks()
    async with Client(params) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        checks.expect(names == TOOLS, f"the server offers the expected tools (got {sorted(names)})")

        print("== configure the organisation (management agent)")
        context = await call(client, "configure_org", {"instruction": CONTEXT})
        management = context["conversation_id"]  # one management conversation for the whole set-up
        article = await call(client, "configure_org", {"instruction": ARTICLE, "conversation_id": management})
        rule = await call(client, "configure_org", {"instruction": RULE, "conversation_id": management})
        for step, reply in (("context", context), ("article", article), ("rule", rule)):
            print(f"  {step}: {reply['text']}")
            checks.expect(reply["outcome"] == "complete", f"configure {step}: the reply is complete")
        checks.expect("return" in article["text"].lower(), "the management agent confirms the returns article")
        checks.expect("safety incident" in rule["text"].lower(), "the management agent confirms the rule")

        print("== a customer scenario (customer agent)")
        scenario = await call(client, "run_customer_scenario", {"messages": [QUESTION, ESCALATE]})
        answer, escalation = scenario["turns"]
        print(f"  > {QUESTION}\n    {answer['text']}\n  > {ESCALATE}\n    {escalation['text']}")
        checks.expect(
            all(t["outcome"] == "complete" and not t.get("missing_event_ids") for t in scenario["turns"]),
            "every reply is complete, with no missing events",
        )
        checks.expect("30 days" in answer["text"], "the answer uses the knowledge article (30 days)")
        checks.expect(answer.get("conversation_status") != "escalated", "the returns question is not escalated")
        checks.expect(escalation.get("conversation_status") == "escalated", "the safety incident is escalated")
        checks.expect(scenario["escalated"] is True, "the scenario reports escalated: true")

        print("== the conversation's history")
        cid = scenario["conversation_id"]
        history = await call(client, "get_conversation_messages", {"conversation_id": cid})
        roles = [m["role"] for m in history["messages"]]
        checks.expect(roles == ["user", "assistant", "user", "assistant"], f"history has both turns (roles {roles})")
        resource = await client.read_resource(f"lexey://conversations/{cid}/messages")
        contents = resource.contents[0]
        checks.expect(
            isinstance(contents, TextResourceContents) and QUESTION in contents.text,
            "the history resource has the same messages",
        )

    if checks.failed:
        print(f"\n{len(checks.failed)} check(s) failed:\n- " + "\n- ".join(checks.failed))
        return 1
    print("\nall checks passed")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--server",
        default=f"{shlex.quote(sys.executable)} -m lexey_mcp --sandbox",
        help="the stdio server command (default: %(default)s)",
    )
    args = parser.parse_args()
    return anyio.run(run, shlex.split(args.server))


if __name__ == "__main__":
    sys.exit(main())
