"""The prompt's newest-messages cache: current only while the shared version is unchanged, applied in place by
the process that made the change, bounded in age and size."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from pynode.chat import recent
from pynode.chat.domain import ASSISTANT, COMPLETE, STREAMING, USER, ChatMessage
from pynode.chat.recent import RecentMessages
from pynode.core.adapters.memory_kv import MemoryKeyValueStore
from pynode.core.db import utcnow


class CountingRepo:
    """The one repository method the cache calls, over a list of rows, counting its reads."""

    def __init__(self) -> None:
        self.rows: list[ChatMessage] = []
        self.reads = 0

    async def history(self, conversation_id: uuid.UUID, before: Any, limit: int) -> list[ChatMessage]:
        assert before is None
        self.reads += 1
        mine = [m for m in self.rows if m.conversation_id == conversation_id]
        return sorted(mine, key=lambda m: (m.created_at, m.id), reverse=True)[:limit]

    def store(self, *messages: ChatMessage) -> None:
        for message in messages:
            self.rows = [m for m in self.rows if m.id != message.id] + [message]


def _exchange(conversation_id: uuid.UUID, text: str, at: Any = None) -> tuple[ChatMessage, ChatMessage]:
    now = at or utcnow()
    asked = ChatMessage(uuid.uuid4(), conversation_id, USER, "alice", text, COMPLETE, now)
    reply = ChatMessage(
        uuid.uuid4(), conversation_id, ASSISTANT, "alice", "", STREAMING, now + timedelta(microseconds=1),
        reply_to_id=asked.id,
    )  # fmt: skip
    return asked, reply


def _texts(messages: list[ChatMessage]) -> list[tuple[str, str]]:
    return [(m.text, m.state) for m in messages]


async def test_the_writer_applies_its_own_changes_and_the_next_prompt_reads_nothing() -> None:
    kv, repo = MemoryKeyValueStore(), CountingRepo()
    cache = RecentMessages(repo, kv)  # type: ignore[arg-type]
    conversation = uuid.uuid4()
    assert await cache.newest(conversation) == [] and repo.reads == 1

    asked, reply = _exchange(conversation, "hello")
    repo.store(asked, reply)
    await cache.changed(conversation, [asked, reply])
    reply.text, reply.state = "hi there", COMPLETE  # the running answer's object changes as it goes...
    assert _texts(await cache.newest(conversation)) == [("", STREAMING), ("hello", COMPLETE)]  # ...not the cache's
    repo.store(reply)
    await cache.changed(conversation, [reply])
    assert _texts(await cache.newest(conversation)) == [("hi there", COMPLETE), ("hello", COMPLETE)]
    assert repo.reads == 1
    assert await cache.newest(conversation) == await repo.history(conversation, None, recent.PAGE)


async def test_a_change_in_another_process_is_seen_at_the_next_read() -> None:
    kv, repo = MemoryKeyValueStore(), CountingRepo()
    here, there = RecentMessages(repo, kv), RecentMessages(repo, kv)  # type: ignore[arg-type]
    conversation = uuid.uuid4()
    first = _exchange(conversation, "one")
    repo.store(*first)
    await here.changed(conversation, first)
    await here.newest(conversation)
    await there.newest(conversation)

    second = _exchange(conversation, "two")
    repo.store(*second)
    await there.changed(conversation, second)  # the other process's entry was current: it applies it in place
    reads = repo.reads
    assert [m.text for m in await there.newest(conversation)] == ["", "two", "", "one"] and repo.reads == reads
    assert [m.text for m in await here.newest(conversation)] == ["", "two", "", "one"] and repo.reads == reads + 1


async def test_a_writer_whose_entry_is_stale_drops_it_rather_than_apply_to_it() -> None:
    kv, repo = MemoryKeyValueStore(), CountingRepo()
    here, there = RecentMessages(repo, kv), RecentMessages(repo, kv)  # type: ignore[arg-type]
    conversation = uuid.uuid4()
    await here.newest(conversation)
    theirs = _exchange(conversation, "theirs")
    repo.store(*theirs)
    await there.changed(conversation, theirs)
    ours = _exchange(conversation, "ours")
    repo.store(*ours)
    await here.changed(conversation, ours)  # its entry predates "theirs": applying "ours" to it would lose that
    assert [m.text for m in await here.newest(conversation)] == ["", "ours", "", "theirs"]


async def test_the_page_keeps_the_newest_in_order_even_from_a_late_clock() -> None:
    kv, repo = MemoryKeyValueStore(), CountingRepo()
    cache = RecentMessages(repo, kv)  # type: ignore[arg-type]
    conversation = uuid.uuid4()
    start = utcnow()
    for i in range(recent.PAGE):
        pair = _exchange(conversation, f"m{i}", start + timedelta(seconds=i))
        repo.store(*pair)
        await cache.changed(conversation, pair)
    await cache.newest(conversation)
    late = _exchange(conversation, "late clock", start - timedelta(seconds=1))  # older than every kept one
    repo.store(*late)
    await cache.changed(conversation, late)
    assert await cache.newest(conversation) == await repo.history(conversation, None, recent.PAGE)


async def test_entries_expire_even_without_a_version_change() -> None:
    kv, repo = MemoryKeyValueStore(), CountingRepo()
    clock = [1000.0]
    cache = RecentMessages(repo, kv, clock=lambda: clock[0])  # type: ignore[arg-type]
    conversation = uuid.uuid4()
    await cache.newest(conversation)
    clock[0] += recent.ENTRY_SECONDS + 0.1
    pair = _exchange(conversation, "after a lost version")
    repo.store(*pair)
    await cache.changed(conversation, pair)  # not applied to an entry past its age
    await cache.newest(conversation)
    assert repo.reads == 2


async def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recent, "MAX_ENTRIES", 3)
    kv, repo = MemoryKeyValueStore(), CountingRepo()
    cache = RecentMessages(repo, kv)  # type: ignore[arg-type]
    ids = [uuid.uuid4() for _ in range(5)]
    for conversation in ids:
        await cache.newest(conversation)
    assert set(cache._entries) == set(ids[2:])
