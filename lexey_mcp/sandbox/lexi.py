"""Lexi, the CRM assistant: a small fixed CRM and a deterministic planner that decides which tools to call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from .store import Message
from .textmatch import tokens, wordset


@dataclass(frozen=True)
class Company:
    id: str
    name: str
    industry: str
    city: str


@dataclass(frozen=True)
class Contact:
    id: str
    name: str
    title: str
    email: str
    phone: str
    company_id: str


@dataclass(frozen=True)
class Deal:
    id: str
    name: str
    company_id: str
    contact_id: str
    stage: str
    amount: int
    currency: str


@dataclass(frozen=True)
class Matter:
    id: str
    name: str
    company_id: str
    status: str


COMPANIES = (
    Company("co_001", "Acme Legal", "legal services", "Milan"),
    Company("co_002", "BrightPath Logistics", "logistics", "Lagos"),
    Company("co_003", "Northwind Traders", "wholesale", "Hamburg"),
)
CONTACTS = (
    Contact("ct_001", "Maria Rossi", "Managing Partner", "maria.rossi@acmelegal.example", "+39 02 5550 1234", "co_001"),
    Contact("ct_002", "James Okafor", "CFO", "james.okafor@brightpath.example", "+234 1 555 0199", "co_002"),
    Contact("ct_003", "Priya Shah", "Associate", "priya.shah@acmelegal.example", "+39 02 5550 5678", "co_001"),
    Contact("ct_004", "Tom Becker", "Head of Operations", "tom.becker@northwind.example", "+49 40 555 0142", "co_003"),
)
DEALS = (
    Deal("dl_001", "Acme Legal annual retainer", "co_001", "ct_001", "negotiation", 48_000, "EUR"),
    Deal("dl_002", "BrightPath fleet contract", "co_002", "ct_002", "proposal", 125_000, "USD"),
    Deal("dl_003", "Northwind expansion", "co_003", "ct_004", "closed won", 32_000, "EUR"),
)
MATTERS = (Matter("mt_001", "Rossi v. Example Corp", "co_001", "open"),)

_CONTACT_WORDS = wordset("contact contacts email emails phone who person people")
_DEAL_WORDS = wordset("deal deals pipeline opportunity opportunities stage amount worth value revenue forecast closing")
_COMPANY_WORDS = wordset("company companies account accounts client clients organisation organization firm")
_OPEN_WORDS = wordset("open active current pending live ongoing")
_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}
MAX_TOOLS = 4


@dataclass(frozen=True)
class ToolCall:
    tool: str
    summary: str


@dataclass
class LexiAnswer:
    thinking: list[str]
    tools: list[ToolCall]
    text: str

    @property
    def cost(self) -> int:
        """Credits: 1 per request plus 1 per CRM tool call (1-5)."""
        return 1 + len(self.tools)


@dataclass
class _Found:
    contacts: dict[str, Contact] = field(default_factory=dict)
    companies: dict[str, Company] = field(default_factory=dict)
    deals: dict[str, Deal] = field(default_factory=dict)
    matters: dict[str, Matter] = field(default_factory=dict)


class _Record(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


_R = TypeVar("_R", bound=_Record)


def _get(tool: str, noun: str, table: tuple[_R, ...], wanted: str | None, into: dict[str, _R]) -> ToolCall | None:
    if not wanted:
        return None
    record = next((r for r in table if r.id == wanted), None)
    if record is None:
        return ToolCall(tool, f"No {noun} {wanted}")
    into[record.id] = record
    return ToolCall(tool, f"Loaded {noun} {record.name}")


def _company(company_id: str) -> Company:
    return next(c for c in COMPANIES if c.id == company_id)


def _money(amount: int, currency: str) -> str:
    return f"{_SYMBOLS.get(currency, currency + ' ')}{amount:,}"


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _describe(found: _Found) -> list[str]:
    lines = [
        f"{c.name} is {c.title} at {_company(c.company_id).name} ({c.email}, {c.phone})."
        for c in found.contacts.values()
    ]
    for company in found.companies.values():
        people = sum(1 for c in CONTACTS if c.company_id == company.id)
        deals = sum(1 for d in DEALS if d.company_id == company.id)
        counts = f"{_count(people, 'contact')}, {_count(deals, 'deal')}"
        lines.append(f"{company.name}: {company.industry} in {company.city}, {counts}.")
    for deal in found.deals.values():
        owner = next(c.name for c in CONTACTS if c.id == deal.contact_id)
        lines.append(f"{deal.name}: stage {deal.stage}, {_money(deal.amount, deal.currency)} (contact: {owner}).")
    for matter in found.matters.values():
        lines.append(f"Matter {matter.name} for {_company(matter.company_id).name} is {matter.status}.")
    return lines


def _named(message: str) -> tuple[list[Contact], list[Company], list[Deal]]:
    """The contacts, companies and deals `message` names (a deal also through its company or contact)."""
    words = set(tokens(message))
    lowered = message.lower()
    contacts = [c for c in CONTACTS if c.email in lowered or words & {part.lower() for part in c.name.split()}]
    companies = [c for c in COMPANIES if c.name.split()[0].lower() in words]
    deals = [
        d
        for d in DEALS
        if d.company_id in {c.id for c in companies}
        or d.contact_id in {c.id for c in contacts}
        or words & (set(tokens(d.name)) - set(tokens(_company(d.company_id).name)))
    ]
    return contacts, companies, deals


def answer(message: str, context: dict[str, str], *, allow_tools: bool, history: list[Message]) -> LexiAnswer:
    """Plan tool calls from the words of the message and the page context (a message that names no record is about
    those the conversation named last), then answer from the results."""
    if not allow_tools:
        return _from_conversation(history)
    found = _Found()
    tools = [
        call
        for call in (
            _get("get_contact", "contact", CONTACTS, context.get("contact_id"), found.contacts),
            _get("get_company", "company", COMPANIES, context.get("company_id"), found.companies),
            _get("get_deal", "deal", DEALS, context.get("deal_id"), found.deals),
            _get("get_matter", "matter", MATTERS, context.get("matter_id"), found.matters),
        )
        if call is not None
    ]
    notes = _search(message, history, found, tools)
    if not tools:
        return LexiAnswer(
            ["No CRM lookup needed for this message."],
            [],
            "Hi! I'm Lexi, your CRM assistant. Ask me about your contacts, companies or deals, for example: "
            '"What stage is the BrightPath deal at?"',
        )
    lines = _describe(found) + notes
    text = " ".join(lines) if lines else "I couldn't find anything matching that in your CRM."
    thinking = [f"Checking the CRM with {_count(len(tools), 'tool call')}: {', '.join(t.tool for t in tools)}."]
    return LexiAnswer(thinking, tools, text)


def _from_conversation(history: list[Message]) -> LexiAnswer:
    """The answer with tools off: what the assistant said last, if anything."""
    previous = next((m.content for m in reversed(history) if m.role == "assistant"), None)
    text = (
        f"Tools are off for this request, so I'm going on our conversation so far: {previous}"
        if previous
        else "Tools are off for this request, so I can't look anything up in your CRM. Ask again with tools "
        "enabled, or give me the details you want me to work with."
    )
    return LexiAnswer(["Answering from the conversation only; CRM tools are disabled."], [], text)


def _search(message: str, history: list[Message], found: _Found, tools: list[ToolCall]) -> list[str]:
    """The searches the words of `message` call for, appended to `tools` (at most `MAX_TOOLS` in all) with what
    they find added to `found`; the notes on what none was found for."""
    words = set(tokens(message))
    named = _named(message)
    contact_hits, company_hits, deal_hits = named
    if not any(named):
        # A follow-up ("who is their contact?") is about the records the conversation last named.
        earlier = (_named(m.content) for m in reversed(history) if m.role == "user")
        contact_hits, company_hits, deal_hits = next((hits for hits in earlier if any(hits)), named)
    wants_deals = bool(words & _DEAL_WORDS)
    wants_contacts = bool(named[0]) or bool(words & _CONTACT_WORDS)
    wants_companies = bool(words & _COMPANY_WORDS) or (bool(named[1]) and not (wants_deals or wants_contacts))
    if wants_contacts and len(tools) < MAX_TOOLS:
        hits = contact_hits or [c for c in CONTACTS if c.company_id in {co.id for co in company_hits}] or list(CONTACTS)
        found.contacts.update((c.id, c) for c in hits)
        tools.append(ToolCall("search_contacts", f"Found {_count(len(hits), 'contact')}"))
    if wants_companies and len(tools) < MAX_TOOLS:
        companies = company_hits or list(COMPANIES)
        found.companies.update((c.id, c) for c in companies)
        tools.append(ToolCall("search_companies", f"Found {_count(len(companies), 'company', 'companies')}"))
    if not (wants_deals and len(tools) < MAX_TOOLS):
        return []
    # Named records first; else the record the user is looking at (the page context); else the whole CRM.
    scope = {c.id for c in found.companies.values()} | {c.company_id for c in found.contacts.values()}
    deals = deal_hits or [d for d in DEALS if not scope or d.company_id in scope]
    kind = "deal"
    if words & _OPEN_WORDS:
        deals = [d for d in deals if not d.stage.startswith("closed")]
        kind = "open deal"
    found.deals.update((d.id, d) for d in deals)
    tools.append(ToolCall("search_deals", f"Found {_count(len(deals), kind)}"))
    if deals:
        return []
    where = " for " + ", ".join(_company(c).name for c in sorted(scope)) if scope else ""
    return [f"There are no {kind}s{where}."]
