"""The built-in development model `builtin/echo`: streams the last user message back, one word per token.

Deterministic and always available, for laptops without a model, tests and benchmarks. `tokens_per_second`
paces it (0 = as fast as the caller reads; DEVPYNODE_AI_BUILTIN_TOKENS_PER_SECOND sets a default); `max_tokens`
cuts it with finish reason `length`.

It has every capability, in a deterministic way, so tool and picture flows can be tried without a model:
- tools: when the request forces a call (tool choice `required` or `named`) and the last message is the
  user's, it calls that tool (the first one for `required`) with arguments `{"text": <the user's message>}`,
  streamed in fragments, and finishes with `tool_calls`; after tool results it streams their contents back;
  with `auto` it never calls a tool.
- vision: each picture of the echoed message adds a token `[image/png 1234 bytes]`.
- embeddings: a 64-dimension hashed bag of words, L2-normalised (texts sharing words are close).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from collections.abc import AsyncIterator

from pynode.ai.domain import (
    LENGTH,
    NAMED,
    REQUIRED,
    STOP,
    TOOL_CALLS,
    Chunk,
    Delta,
    Embeddings,
    Finished,
    ModelInfo,
    Prompt,
    ToolCallDelta,
)
from pynode.core.errors import NotFound

_WORD = re.compile(r"\S+\s*")
_BURST = 16
EMBEDDING_DIMENSIONS = 64
DESCRIPTION = "Development model: streams your last message back, one word per token (not a language model)"


def words(text: str) -> list[str]:
    """The echo model's tokens: each word with the whitespace after it."""
    return _WORD.findall(text)


def prompt_tokens(prompt: Prompt) -> int:
    """The prompt's size in the echo model's tokens: counted at the end, so a long history never delays the
    first token."""
    return sum(len(words(m.content)) for m in prompt.messages)


def _forced_call(prompt: Prompt) -> ToolCallDelta | None:
    """The call a forced tool choice makes the echo model write (None when it answers in text)."""
    choice = prompt.tool_choice
    if not prompt.tools or choice.mode not in (REQUIRED, NAMED):
        return None
    if not prompt.messages or prompt.messages[-1].role != "user":
        return None  # after tool results it answers
    name = choice.name if choice.mode == NAMED else prompt.tools[0].name
    said = prompt.messages[-1].content
    digest = hashlib.sha256(f"{len(prompt.messages)}:{name}:{said}".encode()).hexdigest()[:16]
    return ToolCallDelta(0, f"call_{digest}", name, json.dumps({"text": said}, ensure_ascii=False))


def _echoed(prompt: Prompt) -> str:
    """What the echo model says: the tool results when the prompt ends with them, else the last user message
    (with a token per picture)."""
    trailing = []
    for message in reversed(prompt.messages):
        if message.role != "tool":
            break
        trailing.append(message.content)
    if trailing:
        return " ".join(reversed(trailing))
    said = next((m for m in reversed(prompt.messages) if m.role == "user"), None)
    if said is None:
        return ""
    pictures = [f"[{image.media_type} {len(image.data)} bytes]" for image in said.images]
    return " ".join([said.content, *pictures]) if pictures else said.content


def embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The echo model's vector of a text: each lower-cased word adds one to a hashed component, then L2-norm."""
    vector = [0.0] * dimensions
    for word in text.lower().split():
        bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % dimensions
        vector[bucket] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


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
        call = _forced_call(prompt)
        if call is not None:
            cut = len(call.arguments) // 2  # in fragments, as OpenAI-compatible servers stream them
            yield Delta("", 1, (ToolCallDelta(0, call.id, call.name, ""),))
            yield Delta("", 1, (ToolCallDelta(0, arguments=call.arguments[:cut]),))
            yield Delta("", 1, (ToolCallDelta(0, arguments=call.arguments[cut:]),))
            yield Finished(TOOL_CALLS, prompt_tokens(prompt), 3)
            return
        tokens = words(_echoed(prompt))
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

    async def embed(self, model: str, inputs: list[str], dimensions: int) -> Embeddings:
        if model != "echo":
            raise NotFound(f"the built-in provider has no model {model!r}; it has echo", reason="MODEL_NOT_FOUND")
        size = dimensions or EMBEDDING_DIMENSIONS
        return Embeddings([embedding(text, size) for text in inputs], sum(len(words(t)) for t in inputs))

    async def close(self) -> None:
        return None
