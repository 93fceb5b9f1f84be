"""The response cache: completed answers to deterministic requests (temperature 0 or a seed), replayed as streams.

Keyed on SHA-256 of the whole request as the caller sent it (model or alias, fallbacks, messages, sampling)
and of who sent it: a shared cache would tell anyone who repeats a prompt that somebody asked it before. In
the key-value store (Redis, or memory when embedded). Only streams that completed (stop or length) are
stored; a cancelled or failed one never is. A request may opt out both ways (`no_cache`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pynode.ai.domain import Message, Prompt
from pynode.ai.providers.builtin import words
from pynode.core.kv import KeyValueStore

REPLAY_WORDS = 16


def group_words(text: str, size: int = REPLAY_WORDS) -> list[str]:
    """`text` in pieces of `size` words: a cached answer replays as a stream, not one message."""
    tokens = words(text)
    if not tokens:
        return [text] if text else []
    lead = text[: len(text) - len(text.lstrip())]
    pieces = ["".join(tokens[i : i + size]) for i in range(0, len(tokens), size)]
    pieces[0] = lead + pieces[0]
    return pieces


@dataclass(frozen=True)
class CachedAnswer:
    """What a completed generation left in the cache."""

    model: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    tool_calls: list[list[str]] = field(default_factory=list)  # [id, name, arguments] of each call made


def request_key(user_id: str, requested: str, fallbacks: tuple[str, ...], prompt: Prompt) -> str:
    """The cache key of a request: a hash of everything that shapes the answer, and of the user."""
    sampling = asdict(prompt.sampling)
    sampling.pop("tokens_per_second")  # the built-in model's pace changes when, not what
    canonical = json.dumps(
        {
            "user": user_id,
            "model": requested,
            "fallbacks": list(fallbacks),
            "messages": [_message(m) for m in prompt.messages],
            "sampling": sampling,
            "tools": [[t.name, t.description, t.parameters] for t in prompt.tools],
            "tool_choice": [prompt.tool_choice.mode, prompt.tool_choice.name],
        },
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    )
    return "ai:answer:" + hashlib.sha256(canonical.encode()).hexdigest()


def _message(message: Message) -> list[Any]:
    """A message's part of the key: what shapes the answer (pictures by their hash)."""
    if not (message.tool_calls or message.tool_call_id or message.images):
        return [message.role, message.content]  # as before tools existed: earlier entries stay valid
    return [
        message.role,
        message.content,
        [[c.id, c.name, c.arguments] for c in message.tool_calls],
        message.tool_call_id,
        [hashlib.sha256(i.data).hexdigest() for i in message.images],
    ]


class ResponseCache:
    """Completed answers in the key-value store for `ttl_seconds`."""

    def __init__(self, kv: KeyValueStore, ttl_seconds: float) -> None:
        self._kv = kv
        self.ttl_seconds = ttl_seconds

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0

    async def get(self, key: str) -> CachedAnswer | None:
        raw = await self._kv.get(key)
        if raw is None:
            return None
        try:
            return CachedAnswer(**json.loads(raw))
        except (TypeError, ValueError):
            return None  # written by another version: a miss

    async def put(self, key: str, answer: CachedAnswer) -> None:
        await self._kv.set(key, json.dumps(asdict(answer), separators=(",", ":")), self.ttl_seconds)
