"""Settings of one sandbox instance."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ..sandbox_delay import DEFAULT_DELAY

# Lexi's balance reported when `credits` is None (unlimited): it counts down from here but never refuses.
NOMINAL_LEXI_CREDITS = 5_000


class SandboxConfig(BaseModel):
    """How the simulated APIs behave.

    Credits model: `credits=None` is unlimited. An int gives the Lexey organisation that many message
    credits (each customer or management message costs 1) and, separately, the Lexi workspace that
    many credits (each Lexi request costs 1 + its CRM tool calls, so 1-5). A request whose cost exceeds
    the remaining balance is refused with 402 and charges nothing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    delay: float = Field(default=DEFAULT_DELAY, ge=0, description="seconds between streamed events")
    keys: frozenset[str] | None = Field(
        default=None, description="None: any key with the right prefix; else the exact keys accepted"
    )
    keys_without_lexi_permission: frozenset[str] = Field(
        default=frozenset({"wbk_noperm_key"}), description="workspace keys Lexi refuses with 403"
    )
    credits: int | None = Field(default=None, ge=0)
    message_limit: int = Field(default=50, ge=1, description="user messages per chat conversation before 429")
    max_message_chars: int = Field(default=4000, ge=1, description="chat APIs only; Lexi's limit is 12,000")
    lexi_daily_limit: int = Field(default=1000, ge=0, description="Lexi requests per UTC day before 429")
    seed: int = 0
    webhook_url: str | None = Field(
        default=None, description="POST a signed conversation.escalated webhook here when the agent escalates"
    )
    webhook_secret: SecretStr | None = Field(default=None, description="signs the webhooks (X-Lexey-Signature)")
