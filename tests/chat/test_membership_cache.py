"""SendMessage's conversation cache: used only while the shared version is unchanged, bounded in age."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest

from pynode.chat import membership
from pynode.chat.domain import Conversation
from pynode.chat.membership import CachedConversations
from pynode.core.adapters.memory_kv import MemoryKeyValueStore
from pynode.core.db import utcnow


class CountingRepo:
    """The one repository method the cache calls, counting its reads."""

    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Conversation] = {}
        self.reads = 0

    async def conversation(self, conversation_id: uuid.UUID) -> Conversation | None:
        self.reads += 1
        return self.rows.get(conversation_id)


def _conversation(members: list[str]) -> Conversation:
    return Conversation(uuid.uuid4(), members[0], "t", "builtin/echo", utcnow(), utcnow(), dict.fromkeys(members, ""))


async def test_a_change_in_another_process_is_seen_at_the_next_read() -> None:
    kv, repo = MemoryKeyValueStore(), CountingRepo()
    here, there = CachedConversations(repo, kv), CachedConversations(repo, kv)  # type: ignore[arg-type]
    conversation = _conversation(["alice", "bob"])
    repo.rows[conversation.id] = conversation
    assert (await here.conversation(conversation.id)) is conversation
    assert (await here.conversation(conversation.id)) is conversation
    assert repo.reads == 1  # the second came from the cache

    repo.rows[conversation.id] = replace(conversation, member_names={"alice": ""})  # bob removed, by the other process
    await there.changed(conversation.id)
    seen = await here.conversation(conversation.id)
    assert seen is not None and seen.member_ids == ["alice"] and repo.reads == 2

    del repo.rows[conversation.id]
    await there.changed(conversation.id)
    assert await here.conversation(conversation.id) is None


async def test_entries_expire_even_without_a_version_change() -> None:
    kv, repo = MemoryKeyValueStore(), CountingRepo()
    clock = [1000.0]
    cache = CachedConversations(repo, kv, clock=lambda: clock[0])  # type: ignore[arg-type]
    conversation = _conversation(["alice"])
    repo.rows[conversation.id] = conversation
    await cache.conversation(conversation.id)
    clock[0] += membership.ENTRY_SECONDS + 0.1
    await cache.conversation(conversation.id)
    assert repo.reads == 2


async def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(membership, "MAX_ENTRIES", 3)
    kv, repo = MemoryKeyValueStore(), CountingRepo()
    cache = CachedConversations(repo, kv)  # type: ignore[arg-type]
    ids: list[Any] = []
    for _ in range(5):
        conversation = _conversation(["alice"])
        repo.rows[conversation.id] = conversation
        ids.append(conversation.id)
        await cache.conversation(conversation.id)
    assert len(cache._entries) == 3 and set(cache._entries) == set(ids[2:])
