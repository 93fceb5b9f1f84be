"""A process-local cache of each conversation's newest messages: the history a prompt starts from.

Reading the newest page from the database was on the path of every answer's first token. Each conversation has a
version in the shared key-value store, replaced after every committed change of its messages (an exchange
stored, an answer ended, a lost answer failed by the sweep) by the process that made it. An entry is used only
while the version read *before* it was fetched is still the current one, so a change made in any process is seen
by the next prompt in every process.

The process that makes a change applies it to its own entry, so the next prompt there needs no read: it swaps the
version from the one its entry carries to a new one (compare-and-set); when that fails, another process changed
the conversation meanwhile, and the entry is dropped instead. An entry also lives at most ENTRY_SECONDS: the
backstop for a change whose version failed to be written (a store outage between the commit and the version).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace

from pynode.chat.domain import ChatMessage
from pynode.chat.ports import MessageRepository
from pynode.core.cache import LocalEntries
from pynode.core.errors import Unavailable
from pynode.core.kv import KeyValueStore

PAGE = 20  # the newest messages kept per conversation: the prompt's first page of history
ENTRY_SECONDS = 300.0
VERSION_SECONDS = 7 * 24 * 3600.0  # a version outlives every entry made under it by far
# Bounded by count; each entry by PAGE messages (a prompt's history is bounded by the context budget anyway).
MAX_ENTRIES = 1_000


def version_key(conversation_id: uuid.UUID) -> str:
    return f"chat:history-version:{conversation_id}"


def _newest_first(message: ChatMessage) -> tuple[object, uuid.UUID]:
    return message.created_at, message.id


class RecentMessages:
    """The newest PAGE messages of conversations, newest first (see the module's docstring).

    Each call returns a list of its own, of messages shared between calls: never change them.
    """

    def __init__(self, repo: MessageRepository, kv: KeyValueStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._repo = repo
        self._kv = kv
        self._entries: LocalEntries[uuid.UUID, tuple[ChatMessage, ...]] = LocalEntries(
            MAX_ENTRIES, ENTRY_SECONDS, clock
        )

    async def newest(self, conversation_id: uuid.UUID) -> list[ChatMessage]:
        try:
            version = await self._kv.get(version_key(conversation_id))  # before the read: see the docstring
        except Unavailable:
            # The store is down: no version to trust an entry by, so the database answers (and nothing is kept).
            # Raising here failed the prompt's read-ahead, an exception nobody awaited when the send failed too.
            return await self._repo.history(conversation_id, None, PAGE)
        cached = self._entries.current(conversation_id, version)
        if cached is not None:
            return list(cached)
        found = await self._repo.history(conversation_id, None, PAGE)
        self._entries.keep(conversation_id, tuple(found), version)
        return found

    async def changed(self, conversation_id: uuid.UUID, messages: Iterable[ChatMessage]) -> None:
        """Call after committing `messages` (new, or changed in place) of one conversation."""
        # Snapshots, taken before any wait: a running answer's message changes as it goes.
        snapshots = [replace(message) for message in messages]
        key = version_key(conversation_id)
        new = uuid.uuid4().hex
        taken = self._entries.take(conversation_id)  # past its age, it may miss a change whose version was lost
        if taken is None or not await self._kv.compare_and_set(key, taken[1], new, VERSION_SECONDS):
            await self._kv.set(key, new, ttl_seconds=VERSION_SECONDS)
            return
        # Nobody changed the conversation since the entry was current: it becomes current again with ours.
        merged = {m.id: m for m in taken[0]}
        merged.update((message.id, message) for message in snapshots)
        newest = sorted(merged.values(), key=_newest_first, reverse=True)[:PAGE]
        self._entries.keep(conversation_id, tuple(newest), new)
