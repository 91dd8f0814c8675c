"""The deterministic Lexey agents: the management (configuration) agent and the customer support agent."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..management import NOT_APPLIED
from .amounts import split_threshold
from .store import Article, Conversation, Organisation, Store
from .textmatch import keywords, overlap, phrase_matches, stem, tokens


@dataclass
class AgentReply:
    text: str
    statuses: list[str] = field(default_factory=list)
    escalation_reason: str | None = None  # set on the reply that escalated the conversation


_FLAGS = re.IGNORECASE | re.DOTALL
_CONTEXT = re.compile(
    r"^\s*(?:please\s+)?(?:set|update|change)\s+(?:our|the|my)\s+business\s+context(?:\s+(?:to|as))?\s*[:\-]?\s*(?P<ctx>.+)$",
    _FLAGS,
)
_CONTEXT_PLAIN = re.compile(r"^\s*(?:our\s+business\s+is|we\s+are|we're)\b", _FLAGS)
_ARTICLE = re.compile(
    r"\b(?:add|create|write)\s+(?:a\s+|an\s+|the\s+)?(?:new\s+)?knowledge(?:\s+base)?\s+article\s+"
    r"(?:about|on|for|titled|called)\s+(?P<topic>[^:]+?)\s*:\s*(?P<body>.+)$",
    _FLAGS,
)
_UPDATE_ARTICLE = re.compile(
    r"\b(?:update|change|edit|replace|rewrite)\s+(?:the\s+|our\s+)?(?:knowledge(?:\s+base)?\s+)?article\s+"
    r"(?:about|on|for|titled|called)\s+(?P<topic>[^:]+?)\s*(?:(?:to\s+(?:say|read)|with)\s*)?:\s*(?P<body>.+)$",
    _FLAGS,
)
_REMOVE_ARTICLE = re.compile(
    r"\b(?:remove|delete)\s+(?:the\s+)?(?:knowledge(?:\s+base)?\s+)?article\s+(?:about|on|for|titled|called)\s+"
    r"(?P<topic>.+?)[.!]?\s*$",
    _FLAGS,
)
_RULE_INTENT = re.compile(
    r"\bescalation\s+rules?\b|\bescalate\s+(?:if|when|whenever|any|all|every|conversations?|chats?|customers?)\b",
    re.IGNORECASE,
)
_CLEAR_RULES = re.compile(r"\b(?:remove|delete|clear)\s+(?:all\s+)?(?:the\s+|our\s+)?escalation\s+rules\b", _FLAGS)
_ANALYTICS = re.compile(
    r"\b(?:perform\w*|analytics|metrics|statistics|stats|how\s+many|report|escalation\s+rate|how\s+(?:are|did)\s+we)\b",
    _FLAGS,
)
_DAYS = re.compile(r"\b(?:last|past|previous)\s+(\d{1,4})\s+(day|week|month|hour)s?\b", re.IGNORECASE)
_UNIT_DAYS = {"hour": 1 / 24, "day": 1, "week": 7, "month": 30}
_PERIOD = re.compile(r"\b(?:last|past|this)\s+(day|week|month)\b|\b(today)\b", re.IGNORECASE)
_QUOTED_OR_BARE = (
    r"(?:'(?P<q1>[^']*)'|\"(?P<q2>[^\"]*)\"|“(?P<q3>[^”]*)”|‘(?P<q4>[^’]*)’|(?P<bare>[^,;'\"“‘]+?))"
    r"(?=\s*(?:,|;|\s+and\s|\.\s|\.?\s*$))"
)
_BRANDING = {
    "agent name": re.compile(r"\bagent(?:'s)?\s+name\s*(?:to|as|is|=|:)?\s*" + _QUOTED_OR_BARE, _FLAGS),
    "primary colour": re.compile(r"\bprimary\s+colou?r\s*(?:to|as|is|=|:)?\s*" + _QUOTED_OR_BARE, _FLAGS),
    "welcome heading": re.compile(
        r"\bwelcome\s+(?:heading|message|title)\s*(?:to|as|is|=|:)?\s*" + _QUOTED_OR_BARE, _FLAGS
    ),
}
_ESCALATION = re.compile(
    r"\bescalat\w*\b.*?\b(?:mentions?|mentioning|says?|asks?\s+about|asking\s+about|talks?\s+about|brings?\s+up|"
    r"raises?|contains?|containing|includes?|involving|regarding|about|for)\s+(?P<list>.+)$",
    _FLAGS,
)
# "Always escalate legal issues", "Escalation rules: escalate refunds and chargebacks": the subjects follow the verb.
_ESCALATE_SUBJECTS = re.compile(
    r"(?:^|[:.;]\s*)(?:please\s+)?(?:always\s+)?escalate\s+(?:(?:all|any|every)\s+)?(?P<list>.+)$", _FLAGS
)
_HANDOVER = re.compile(
    r"\s+to\s+(?:a\s+|an\s+|the\s+)?(?:human|person|agent|operator|member\s+of\s+\w+\s+team)\b.*$", re.I
)
# A comma between digits is part of an amount ("over $1,000"), not a list.
_LIST_SPLIT = re.compile(r"\s*(?:(?<!\d),|,(?!\d{3}(?!\d)))\s*(?:or\s+|and\s+)?|\s+or\s+|\s+and\s+", re.IGNORECASE)
_SHOW = re.compile(r"\b(?:show|list|what\s+is|what's|what\s+are|describe)\b.*\b(?:config\w*|settings|setup)\b", _FLAGS)
_GREETING = frozenset({"hi", "hello", "hey", "morning", "afternoon", "evening", "greetings"})

HELP = (
    'I can help you configure your organisation. I understand: business context ("Our business is …" or '
    '"Set our business context: …"); knowledge articles ("Add a knowledge article about pricing: …", '
    '"Update the knowledge article about pricing: …", "Remove the article about pricing"); branding ("Set our '
    "agent name to 'Acme Support', primary colour to '#2563EB', and welcome heading to 'Need help?'\"); "
    'escalation rules ("Always escalate if a customer mentions refunds or legal issues", "Always escalate refund '
    'requests over $100", "Clear escalation rules"); analytics ("How have we performed over the last 7 days?"); '
    'and "Show our configuration".'
)


def _quoted(match: re.Match[str]) -> str:
    for group in ("q1", "q2", "q3", "q4", "bare"):
        value = match.group(group)
        if value is not None:
            return value.strip()
    return ""


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _percent(part: int, whole: int) -> str:
    if whole == 0:
        return "0%"
    return f"{round(100 * part / whole, 1):g}%"


class ManagementAgent:
    """Understands the vendor's documented management tasks; every reply says what changed."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def _org(self) -> Organisation:
        return self._store.org

    def respond(self, message: str, moment: datetime) -> AgentReply:
        text = message.strip()
        if match := _CONTEXT.match(text):
            return self._set_context(match.group("ctx").strip())
        if _CONTEXT_PLAIN.match(text):
            return self._set_context(text)
        if match := _ARTICLE.search(text):
            return self._add_article(match.group("topic").strip(" '\"“”"), match.group("body").strip())
        if match := _UPDATE_ARTICLE.search(text):
            return self._update_article(match.group("topic").strip(" '\"“”"), match.group("body").strip())
        if re.search(r"\bknowledge(?:\s+base)?\s+article\b", text, re.IGNORECASE) and not _REMOVE_ARTICLE.search(text):
            return AgentReply(
                f"{NOT_APPLIED} a knowledge article needs a topic and the article text after a colon, for example: "
                '"Add a knowledge article about pricing: Our plans are Free and Pro ($12/month)."'
            )
        if match := _REMOVE_ARTICLE.search(text):
            return self._remove_article(match.group("topic").strip(" '\"“”"))
        if _CLEAR_RULES.search(text):
            count = len(self._org.escalation_phrases)
            self._org.escalation_phrases.clear()
            return AgentReply(f"Removed {_plural(count, 'escalation rule')}. Nothing escalates automatically now.")
        if _RULE_INTENT.search(text) or _ESCALATE_SUBJECTS.search(text):
            match = _ESCALATION.search(text) or _ESCALATE_SUBJECTS.search(text)
            return self._add_rules(match.group("list") if match else "")
        if _ANALYTICS.search(text):
            return self._analytics(text, moment)
        branding = {name: _quoted(m) for name, pattern in _BRANDING.items() if (m := pattern.search(text))}
        if branding:
            return self._brand(branding)
        if _SHOW.search(text):
            return AgentReply(self._summary())
        return AgentReply(f"{NOT_APPLIED} I didn't understand that instruction. {HELP}")

    def _set_context(self, context: str) -> AgentReply:
        self._org.business_context = context
        return AgentReply(
            f'Business context saved: "{context}" Your support agent will use it when customers ask about '
            "your business."
        )

    def _add_article(self, topic: str, body: str) -> AgentReply:
        key = topic.lower()
        verb = "Updated" if key in self._org.articles else "Added"
        self._org.articles[key] = Article(topic=topic, body=body)
        return AgentReply(
            f'{verb} the knowledge article "{topic}" ({_plural(len(body.split()), "word")}). Customers asking about '
            f"{topic} will now get this answer. The knowledge base has {_plural(len(self._org.articles), 'article')}."
        )

    def _update_article(self, topic: str, body: str) -> AgentReply:
        if topic.lower() not in self._org.articles:
            return self._no_article(topic)
        return self._add_article(self._org.articles[topic.lower()].topic, body)

    def _no_article(self, topic: str) -> AgentReply:
        known = ", ".join(a.topic for a in self._org.articles.values()) or "none"
        return AgentReply(f'{NOT_APPLIED} there is no knowledge article about "{topic}". Articles: {known}.')

    def _remove_article(self, topic: str) -> AgentReply:
        if self._org.articles.pop(topic.lower(), None) is None:
            return self._no_article(topic)
        return AgentReply(f'Removed the knowledge article "{topic}".')

    def _brand(self, changes: dict[str, str]) -> AgentReply:
        org = self._org
        for name, value in changes.items():
            if name == "agent name":
                org.agent_name = value
            elif name == "primary colour":
                org.primary_colour = value
            else:
                org.welcome_heading = value
        done = "; ".join(f"{name} → '{value}'" for name, value in changes.items())
        return AgentReply(f"Branding updated: {done}.")

    def _add_rules(self, listing: str) -> AgentReply:
        listing = re.split(r"[.!?](?:\s|$)", listing.strip(), maxsplit=1)[0]
        listing = _HANDOVER.sub("", listing)
        phrases = [p.strip(" .;:!?'\"") for p in _LIST_SPLIT.split(listing)]
        phrases = [p for p in phrases if p and keywords(split_threshold(p)[0])]
        if not phrases:
            return AgentReply(
                f"{NOT_APPLIED} tell me what should trigger an escalation, for example: "
                '"Always escalate if a customer mentions refunds or legal issues."'
            )
        added = [p for p in phrases if p.lower() not in {q.lower() for q in self._org.escalation_phrases}]
        self._org.escalation_phrases.extend(added)
        rules = "; ".join(self._org.escalation_phrases)
        return AgentReply(
            f"Escalation rules updated ({_plural(len(added), 'new rule')}). I'll hand the conversation to a human "
            f"whenever a customer mentions: {rules}."
        )

    def _analytics(self, text: str, moment: datetime) -> AgentReply:
        days: float = 7
        label = "7 days"
        if match := _DAYS.search(text):
            count, unit = int(match.group(1)), match.group(2).lower()
            days, label = count * _UNIT_DAYS[unit], _plural(count, unit)
        elif match := _PERIOD.search(text):
            unit = (match.group(1) or "day").lower()
            days, label = _UNIT_DAYS[unit], f"{'day' if match.group(2) else unit}"
        since = moment - timedelta(days=days)
        conversations = [
            c for c in self._store.conversations.values() if c.kind == "customer" and c.created_at >= since
        ]
        customer_messages = sum(
            1
            for c in self._store.conversations.values()
            if c.kind == "customer"
            for m in c.messages
            if m.role == "user" and m.created_at >= since
        )
        escalations = sum(1 for c in conversations if c.escalated_at is not None)
        return AgentReply(
            f"Performance over the last {label}: {_plural(len(conversations), 'conversation')}, "
            f"{_plural(customer_messages, 'customer message')}, {_plural(escalations, 'escalation')} "
            f"(escalation rate {_percent(escalations, len(conversations))})."
        )

    def _summary(self) -> str:
        org = self._org
        articles = ", ".join(a.topic for a in org.articles.values()) or "none"
        rules = "; ".join(org.escalation_phrases) or "none"
        return (
            f"Current configuration. Business context: {org.business_context or 'not set'}. "
            f"Knowledge articles: {articles}. Agent name: {org.agent_name or 'not set'}. "
            f"Primary colour: {org.primary_colour or 'not set'}. Welcome heading: {org.welcome_heading or 'not set'}. "
            f"Escalation rules: {rules}."
        )


def rule_matches(rule: str, message: str) -> bool:
    """An escalation rule's subject occurs in `message`, and an amount the message names meets the rule's amount
    condition when it has one ("refund requests over $100")."""
    subject, threshold = split_threshold(rule)
    return phrase_matches(subject, message) and (threshold is None or threshold.met_by(message))


class CustomerAgent:
    """Answers from the knowledge base by word overlap; escalates when an escalation rule matches."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def respond(self, conversation: Conversation, message: str, moment: datetime) -> AgentReply:
        org = self._store.org
        first_reply = not any(m.role == "assistant" for m in conversation.messages)
        intro = f"Hi, I'm {org.agent_name}. " if org.agent_name and first_reply else ""
        matched = next((phrase for phrase in org.escalation_phrases if rule_matches(phrase, message)), None)
        if matched is not None:
            first = conversation.escalated_at is None
            if first:
                conversation.escalated_at = moment
            return AgentReply(
                intro + "I understand this needs a person's attention, so I'm handing you over to a member of our "
                "team. They'll pick up this conversation shortly.",
                ["escalated"],
                f"The customer mentioned {matched}" if first else None,
            )
        article = self._best_article(message, org)
        if article is not None:
            return AgentReply(intro + f"Here's what I can tell you about {article.topic}: {article.body}")
        if org.business_context and overlap(message, org.business_context) >= 2:
            return AgentReply(intro + f"Here's a little about us: {org.business_context}")
        if set(tokens(message)) & _GREETING:
            name = f"I'm {org.agent_name}. " if org.agent_name else ""
            heading = f"{org.welcome_heading} " if org.welcome_heading else ""
            return AgentReply(f"Hi! {name}{heading}How can I help you today?")
        return AgentReply(
            intro + "I'm sorry, I don't know the answer to that. There is nothing about it in my knowledge base yet, "
            "so I'd rather not guess."
        )

    @staticmethod
    def _best_article(message: str, org: Organisation) -> Article | None:
        asked = set(keywords(message))
        best: tuple[int, Article] | None = None
        for article in org.articles.values():
            topic = set(keywords(article.topic)) | {stem(t) for t in tokens(article.topic)}
            score = 2 * len(asked & topic) + len(asked & set(keywords(article.body)))
            if score >= 2 and (best is None or score > best[0]):
                best = (score, article)
        return best[1] if best else None
