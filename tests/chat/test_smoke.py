"""Temporary."""

from __future__ import annotations

from tests.chat.conftest import ANSWER, Start


async def test_send(chat: Start) -> None:
    alice, bob = await chat()
    conversation = await alice.create()
    sent = await alice.send(conversation.id, "hi there")
    print(sent.responses)
    assert sent.reply.text == ANSWER
