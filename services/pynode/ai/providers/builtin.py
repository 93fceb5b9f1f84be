"""The built-in development model `builtin/echo`: streams the last user message back, one word per token.

Deterministic and always available, for laptops without a model, tests and benchmarks. `tokens_per_second`
paces it (0 = as fast as the caller reads; DEVPYNODE_AI_BUILTIN_TOKENS_PER_SECOND sets a default); `max_tokens`
cuts it with finish reason `length`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

from pynode.ai.domain import LENGTH, STOP, Chunk, Delta, Finished, ModelInfo, Prompt
from pynode.core.errors import NotFound

_WORD = re.compile(r"\S+\s*")
_BURST = 16
DESCRIPTION = "Development model: streams your last message back, one word per token (not a language model)"


def words(text: str) -> list[str]:
    """The echo model's tokens: each word with the whitespace after it."""
    return _WORD.findall(text)


def prompt_tokens(prompt: Prompt) -> int:
    """The prompt's size in the echo model's tokens: counted at the end, so a long history never delays the
    first token."""
    return sum(len(words(m.content)) for m in prompt.messages)


class BuiltinProvider:
    """Provider `builtin`, model `echo`."""

    name = "builtin"
    kind = "builtin"

    def __init__(self, tokens_per_second: float = 0) -> None:
        self.tokens_per_second = tokens_per_second  # the pace when a request sets none

    async def models(self) -> list[ModelInfo]:
        return [ModelInfo("builtin/echo", self.name, True, development=True, description=DESCRIPTION)]

    async def stream(self, prompt: Prompt) -> AsyncIterator[Chunk]:
        if prompt.model != "echo":
            raise NotFound(
                f"the built-in provider has no model {prompt.model!r}; it has echo", reason="MODEL_NOT_FOUND"
            )
        said = next((m.content for m in reversed(prompt.messages) if m.role == "user"), "")
        tokens = words(said)
        limit = prompt.sampling.max_tokens
        asked = prompt.sampling.tokens_per_second
        pace = self.tokens_per_second if asked is None else asked
        start = time.monotonic()
        for i, token in enumerate(tokens):
            if limit and i >= limit:
                yield Finished(LENGTH, prompt_tokens(prompt), i)
                return
            if pace:
                delay = start + i / pace - time.monotonic()  # drift-free: token i is due at i/pace
                await asyncio.sleep(max(0.0, delay))
            elif i % _BURST == 1:
                # As fast as it can, in bursts: the first token alone (it goes out at once), then the loop
                # gets a turn every few tokens, as a real model server's socket reads would give it.
                await asyncio.sleep(0)
            yield Delta(token)
        yield Finished(STOP, prompt_tokens(prompt), len(tokens))

    async def close(self) -> None:
        return None
