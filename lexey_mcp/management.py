"""What a management agent's reply says about the instruction it was given.

The sandbox's management agent starts every reply to an instruction it did not apply (not understood, incomplete, or
naming something that does not exist) with NOT_APPLIED, and nothing else starts that way. `configure_org` and suite
setup read a reply with `not_applied`: an instruction that changed nothing is not a success.
"""

from __future__ import annotations

#: The fixed start of a management reply that did not apply the instruction (docs/sandbox-instructions.md).
NOT_APPLIED = "Not applied:"


def not_applied(reply: str) -> bool:
    """Whether a management agent's reply says it did not apply the instruction."""
    return reply.lstrip().startswith(NOT_APPLIED)
