"""The deterministic agents: the vendor's E2E workflow over HTTP, and the agents' parsing rules directly."""

from __future__ import annotations

from datetime import timedelta

import httpx2
import pytest

from lexey_mcp.management import not_applied
from lexey_mcp.sandbox import Sandbox, SandboxConfig
from lexey_mcp.sandbox.agents import CustomerAgent, ManagementAgent
from lexey_mcp.sandbox.store import Message, Store, now

from .helpers import MANAGEMENT, chat_events, chat_text, conversation, send

PRICING = (
    "Add a knowledge article about pricing: Our plans are Free (up to 3 projects), Pro ($12/month, unlimited "
    "projects), and Enterprise (custom pricing)."
)
RULES = (
    "Add these escalation rules: always escalate if a customer mentions billing disputes, refund requests over "
    "$100, or legal issues."
)


@pytest.mark.anyio
async def test_vendor_e2e_workflow(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    manage = await conversation(client, sb, "management")
    context = await send(
        client, sb, manage, "Our business is a SaaS company called Acme. We build project tools.", "management"
    )
    assert chat_text(context.text).startswith('Business context saved: "Our business is a SaaS company called Acme.')
    article = await send(client, sb, manage, PRICING, "management")
    assert chat_text(article.text).startswith('Added the knowledge article "pricing"')
    rules = await send(client, sb, manage, RULES, "management")
    assert chat_text(rules.text).endswith(
        "whenever a customer mentions: billing disputes; refund requests over $100; legal issues."
    )

    customer = await conversation(client, sb)
    pricing = await send(client, sb, customer, "How much does the Pro plan cost?")
    assert chat_text(pricing.text) == "Here's what I can tell you about pricing: " + PRICING.split(": ", 1)[1]
    assert all(e["type"] == "delta" for e in chat_events(pricing.text))
    refund = await send(client, sb, customer, "I was charged twice and I want a refund of $250.")
    payloads = chat_events(refund.text)
    assert payloads[-1] == {"type": "status", "status": "escalated"}
    assert "handing you over to a member of our team" in chat_text(refund.text)

    other = await conversation(client, sb)
    await send(client, sb, other, "What are your pricing plans?")

    analytics = await send(client, sb, manage, "How have we performed over the last 7 days?", "management")
    assert chat_text(analytics.text) == (
        "Performance over the last 7 days: 2 conversations, 3 customer messages, 1 escalation (escalation rate 50%)."
    )
    history = await client.get(f"{sb.base_url}/management/conversations/{manage}/messages", headers=MANAGEMENT)
    assert [m["role"] for m in history.json()["messages"]] == ["user", "assistant"] * 4


@pytest.mark.anyio
async def test_branding_greets_with_agent_name(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    manage = await conversation(client, sb, "management")
    reply = await send(
        client,
        sb,
        manage,
        "Set our agent name to 'Acme Support', primary colour to '#2563EB', and welcome heading to "
        "'Need help with Acme?'",
        "management",
    )
    assert chat_text(reply.text) == (
        "Branding updated: agent name → 'Acme Support'; primary colour → '#2563EB'; "
        "welcome heading → 'Need help with Acme?'."
    )
    customer = await conversation(client, sb)
    hello = await send(client, sb, customer, "Hello!")
    assert chat_text(hello.text) == "Hi! I'm Acme Support. Need help with Acme? How can I help you today?"
    unknown = await send(client, sb, customer, "Do you sell garden gnomes?")
    assert chat_text(unknown.text).startswith("I'm sorry, I don't know the answer to that.")
    fresh = await conversation(client, sb)
    first = await send(client, sb, fresh, "Do you sell garden gnomes?")
    assert chat_text(first.text).startswith("Hi, I'm Acme Support. I'm sorry, I don't know")


@pytest.mark.anyio
async def test_unknown_instruction_lists_capabilities(sb: Sandbox, client: httpx2.AsyncClient) -> None:
    manage = await conversation(client, sb, "management")
    reply = chat_text((await send(client, sb, manage, "Make me a sandwich", "management")).text)
    assert reply.startswith("Not applied: I didn't understand that instruction. I can help you configure your")
    assert not_applied(reply)
    for capability in ("business context", "knowledge articles", "branding", "escalation rules", "analytics"):
        assert capability in reply


def _agents() -> tuple[Store, ManagementAgent, CustomerAgent]:
    store = Store(SandboxConfig())
    return store, ManagementAgent(store), CustomerAgent(store)


def test_management_agent_configuration_tasks() -> None:
    store, manage, _ = _agents()
    moment = now()
    manage.respond("Set our business context: We are a pet supplies store in Leeds.", moment)
    assert store.org.business_context == "We are a pet supplies store in Leeds."
    manage.respond("Add a knowledge article about delivery: We deliver within 2 days.", moment)
    updated = manage.respond("Add a knowledge article about Delivery: We deliver within 1 day.", moment)
    assert updated.text.startswith('Updated the knowledge article "Delivery"')
    assert store.org.articles["delivery"].body == "We deliver within 1 day."
    assert "after a colon" in manage.respond("Add a knowledge article about returns", moment).text
    manage.respond("Set our agent name to Pet Pal and primary colour to #FF8800.", moment)
    assert (store.org.agent_name, store.org.primary_colour) == ("Pet Pal", "#FF8800")
    manage.respond("Always escalate if a customer mentions refunds or chargebacks", moment)
    assert store.org.escalation_phrases == ["refunds", "chargebacks"]
    manage.respond("Always escalate if a customer mentions refunds", moment)
    assert store.org.escalation_phrases == ["refunds", "chargebacks"]
    summary = manage.respond("Show our configuration", moment).text
    assert "Knowledge articles: Delivery." in summary
    assert "Escalation rules: refunds; chargebacks." in summary
    assert (
        manage.respond("Remove the article about delivery", moment).text == 'Removed the knowledge article "delivery".'
    )
    assert manage.respond("Clear escalation rules", moment).text.startswith("Removed 2 escalation rules.")
    assert store.org.articles == {}
    assert store.org.escalation_phrases == []


def test_analytics_window() -> None:
    store, manage, _customer = _agents()
    moment = now()
    old = store.create_conversation("customer")
    old.created_at = moment - timedelta(days=10)
    old.messages.append(Message("user", "hi", moment - timedelta(days=10)))
    old.escalated_at = moment - timedelta(days=10)
    recent = store.create_conversation("customer")
    recent.messages.append(Message("user", "hi", moment))
    store.create_conversation("management")
    assert manage.respond("How have we performed over the last 7 days?", moment).text == (
        "Performance over the last 7 days: 1 conversation, 1 customer message, 0 escalations (escalation rate 0%)."
    )
    assert manage.respond("How did we do over the last 2 weeks?", moment).text == (
        "Performance over the last 2 weeks: 2 conversations, 2 customer messages, 1 escalation (escalation rate 50%)."
    )
    assert "over the last month:" in manage.respond("Show me analytics for the last month", moment).text


def test_escalation_matching_is_plural_and_qualifier_insensitive() -> None:
    store, manage, customer = _agents()
    moment = now()
    manage.respond(RULES, moment)
    conv = store.create_conversation("customer")
    assert customer.respond(conv, "Can I get my money back? I need a refund of $150", moment).statuses == ["escalated"]
    assert conv.escalated_at == moment
    calm = store.create_conversation("customer")
    assert customer.respond(calm, "How do I update my billing address?", moment).statuses == []
    assert customer.respond(calm, "I have a billing dispute about last month", moment).statuses == ["escalated"]
    assert customer.respond(calm, "This is a legal matter", moment).statuses == ["escalated"]


def test_escalation_rules_name_their_subjects_after_the_verb() -> None:
    # The forms QA suites and the design's example use: "always escalate X", "rules: escalate X and Y".
    store, manage, customer = _agents()
    moment = now()
    reply = manage.respond("Add these escalation rules: always escalate legal issues.", moment)
    assert reply.text.startswith("Escalation rules updated (1 new rule).")
    manage.respond("Escalate refunds and data breaches.", moment)
    assert store.org.escalation_phrases == ["legal issues", "refunds", "data breaches"]
    conv = store.create_conversation("customer")
    assert customer.respond(conv, "I need to talk about a legal issue with my contract.", moment).statuses == [
        "escalated"
    ]
    # An analytics question that uses the verb is still an analytics question, not a rule.
    question = manage.respond("How many conversations did we escalate last week?", moment)
    assert question.text.startswith("Performance over the last week:")
    assert store.org.escalation_phrases == ["legal issues", "refunds", "data breaches"]


@pytest.mark.parametrize(
    ("message", "escalated"),
    [
        ("I want a refund of $20", False),
        ("Please give me my $500 back", True),
        ("Refund my $100 please", False),  # over $100: exactly $100 is not over
        ("Refund my $100.50 please", True),
        ("I'd like a refund of 250 dollars", True),
        ("Refund USD 250 to my card", True),
        ("Refund 250 USD to my card", True),
        ("I need a refund of $1,250.00", True),
        ("I want a refund", False),  # no amount: nothing says it is over $100
        ("My invoice says $500, is that right?", False),  # an amount, but no refund
    ],
)
def test_escalation_rules_with_an_amount_escalate_only_past_it(message: str, escalated: bool) -> None:
    store, manage, customer = _agents()
    moment = now()
    reply = manage.respond("Always escalate refund requests over $100 to a human.", moment)
    assert reply.text.endswith("whenever a customer mentions: refund requests over $100.")
    conv = store.create_conversation("customer")
    assert customer.respond(conv, message, moment).statuses == (["escalated"] if escalated else [])


def test_amount_conditions_read_their_comparison_and_keep_thousands_together() -> None:
    store, manage, customer = _agents()
    moment = now()
    manage.respond("Always escalate chargebacks under $5, refunds of at least USD 1,000 and legal issues.", moment)
    assert store.org.escalation_phrases == ["chargebacks under $5", "refunds of at least USD 1,000", "legal issues"]
    for message, statuses in [
        ("A chargeback of $4.99 came in", ["escalated"]),
        ("A chargeback of $5 came in", []),
        ("Refund 1000 dollars", ["escalated"]),
        ("Refund $999.99", []),
    ]:
        assert customer.respond(store.create_conversation("customer"), message, moment).statuses == statuses, message


def test_articles_are_updated_and_what_is_not_applied_says_so_in_one_form() -> None:
    store, manage, _ = _agents()
    moment = now()
    added = manage.respond("Add a knowledge article about Refunds: Refunds within 30 days.", moment).text
    assert not not_applied(added)
    updated = manage.respond("Update the knowledge article about refunds: Refunds within 60 days.", moment).text
    assert updated.startswith('Updated the knowledge article "Refunds" (4 words).')
    assert not not_applied(updated)
    assert store.org.articles["refunds"].body == "Refunds within 60 days."
    changed = manage.respond("Change the article about refunds to say: No refunds.", moment).text
    assert changed.startswith('Updated the knowledge article "Refunds"')
    assert store.org.articles["refunds"].body == "No refunds."
    for instruction in (
        "Update the knowledge article about gnomes: Gnomes are free.",  # no such article: nothing is created
        "Remove the article about gnomes",
        "Add a knowledge article about returns",  # no text
        "Always escalate",  # nothing to escalate
        "Please make refunds over $100 go to a human.",  # not a form the sandbox reads
    ):
        reply = manage.respond(instruction, moment).text
        assert reply.startswith("Not applied: "), (instruction, reply)
        assert not_applied(reply), instruction
    assert list(store.org.articles) == ["refunds"]
    assert store.org.escalation_phrases == []
    for applied in ("Show our configuration", "How have we performed over the last 7 days?", "Clear escalation rules"):
        assert not not_applied(manage.respond(applied, moment).text), applied
