"""Upstream words in a tool's text block: quoted between boundary lines a reply cannot fake, or kept on one line."""

from __future__ import annotations

import re
from secrets import token_hex


class Fence:
    """Boundary lines around upstream words in a text block, with a nonce new on every call, so a reply cannot
    fake the end of its own quote."""

    LINE = re.compile(r"^<<<(end )?reply ([0-9a-f]{16})>>>$", re.MULTILINE)

    def __init__(self) -> None:
        self.nonce = token_hex(8)

    def __call__(self, text: str) -> str:
        return f"<<<reply {self.nonce}>>>\n{text}\n{self.end(self.nonce)}"

    @staticmethod
    def end(nonce: str) -> str:
        return f"<<<end reply {nonce}>>>"

    @classmethod
    def open_at(cls, text: str, at: int) -> list[str]:
        """The nonces of the fences in `text` opened before `at` and closed after it, innermost last. Upstream text
        cannot know a nonce, so a fence closed after `at` is ours, or a fake one inside ours."""
        opened: list[str] = []
        closed_after: set[str] = set()
        for line in cls.LINE.finditer(text):
            is_end, nonce = line[1] is not None, line[2]
            if line.end() > at:
                if is_end:
                    closed_after.add(nonce)
            elif not is_end:
                opened.append(nonce)
            elif nonce in opened:
                del opened[len(opened) - 1 - opened[::-1].index(nonce)]
        return [nonce for nonce in opened if nonce in closed_after]


def one_line(text: str) -> str:
    """Upstream words outside a fence (a status, an error) cannot start a line of their own."""
    return " ".join(text.split())
