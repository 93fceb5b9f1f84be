"""The prompt reads only the history it can hold: one read past the cached newest page, however long the
conversation, of no more messages than the context budget reaches."""

from __future__ import annotations

from typing import Any

from tests.ai.fakes import FakeProvider
from tests.chat.conftest import Start


async def test_a_long_history_is_read_once_and_only_as_far_as_the_budget(chat: Start, ollama: FakeProvider) -> None:
    (alice,) = await chat(1, chat_context_chars=4000, chat_messages_per_minute=0)
    conversation = await alice.create()
    for i in range(30):
        await alice.send(conversation.id, f"m{i:02d} " + "x" * 96)  # 100 characters each
    repo: Any = alice.parts.messages
    reads: list[tuple[str, int]] = []  # (method, rows) of reads further back than the newest page

    def counted(name: str) -> Any:
        original = getattr(repo, name)

        async def read(conversation_id: Any, before: Any, *args: Any) -> Any:
            found = await original(conversation_id, before, *args)
            if before is not None:
                reads.append((name, len(found)))
            return found

        return read

    for name in ("history", "history_within"):
        if hasattr(repo, name):
            setattr(repo, name, counted(name))
    await alice.send(conversation.id, "last " + "x" * 95)
    prompt = ollama.chats[-1].body
    assert prompt is not None
    given = [m for m in prompt["messages"] if m["role"] != "system"]
    # 4000 characters: the new message and 39 before it (user messages of 100, answers shorter).
    assert given[-1]["content"].startswith("last ") and len(given) > 20
    assert len(reads) == 1, reads
    assert reads[0][1] <= len(given) - 20 + 1, reads  # the cached page, then what fits, and one that did not
