"""builtin/echo's pace: a request that sets none takes the server's (30 tokens/s in development mode, so
streaming and Ctrl-C can be seen); a request's explicit 0 stays as fast as possible (benchmarks) (#26 item 4)."""

from __future__ import annotations

from typing import Any

import pytest
from devpynode.ai.v1 import ai_pb2

from pynode.ai.domain import Message, Prompt, Sampling
from pynode.ai.providers import builtin
from pynode.ai.providers.builtin import BuiltinProvider
from pynode.ai.servicer import command_of
from pynode.ai.settings import DEV_BUILTIN_TOKENS_PER_SECOND, AISettings


def _request(**options: Any) -> ai_pb2.GenerateRequest:
    return ai_pb2.GenerateRequest(
        model="builtin/echo",
        messages=[ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content="one two three four")],
        options=ai_pb2.GenerateOptions(**options),
    )


def test_an_unset_pace_is_told_from_an_explicit_zero() -> None:
    assert command_of(_request()).sampling.tokens_per_second is None
    assert command_of(_request(tokens_per_second=0)).sampling.tokens_per_second == 0
    assert command_of(_request(tokens_per_second=40)).sampling.tokens_per_second == 40


def test_the_servers_pace_is_visible_in_development_mode_only() -> None:
    assert AISettings().builtin_pace(dev_mode=True) == DEV_BUILTIN_TOKENS_PER_SECOND > 0
    assert AISettings().builtin_pace(dev_mode=False) == 0
    assert AISettings(ai_builtin_tokens_per_second=0).builtin_pace(dev_mode=True) == 0
    assert AISettings(ai_builtin_tokens_per_second=5).builtin_pace(dev_mode=False) == 5


@pytest.mark.parametrize(("asked", "paced"), [(None, True), (0, False), (2, True)])
async def test_the_provider_paces_unless_the_request_says_zero(
    asked: int | None, paced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # what the provider waits, without waiting
        waits.append(seconds)

    monkeypatch.setattr(builtin.asyncio, "sleep", sleep)
    prompt = Prompt("echo", (Message("user", "one two three four"),), Sampling(tokens_per_second=asked))
    chunks = [chunk async for chunk in BuiltinProvider(1).stream(prompt)]
    assert len(chunks) == 5  # four words and the end
    assert any(wait > 0 for wait in waits) == paced
