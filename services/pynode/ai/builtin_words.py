"""Splitting text into the pieces a replayed (cached) answer is streamed in."""

from __future__ import annotations

from pynode.ai.providers.builtin import words

REPLAY_WORDS = 16


def group_words(text: str, size: int = REPLAY_WORDS) -> list[str]:
    """`text` in pieces of `size` words (a cached answer replays as a stream, not one message)."""
    tokens = words(text)
    if not tokens:
        return [text] if text else []
    lead = text[: len(text) - len(text.lstrip())]
    pieces = ["".join(tokens[i : i + size]) for i in range(0, len(tokens), size)]
    pieces[0] = lead + pieces[0]
    return pieces
