"""A process-local cache of conversations for SendMessage's hot path: who may write, and to which model.

Each conversation has a version in the shared key-value store, replaced by every change of its members, title or
model, and by its deletion. An entry is used only while the version read *before* it was fetched is still the
current one; the version is read on every use, so a change made in any process is seen by the next call in every
process. An entry also lives at most ENTRY_SECONDS: the backstop for a change whose version failed to be written
(a store outage between the database commit and the version write).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from pynode.chat.domain import Conversation
from pynode.chat.ports import ConversationRepository
from pynode.core.cache import LocalEntries
from pynode.core.kv import KeyValueStore

ENTRY_SECONDS = 5.0
VERSION_SECONDS = 7 * 24 * 3600.0  # a version outlives every entry made under it by far
MAX_ENTRIES = 10_000


def version_key(conversation_id: uuid.UUID) -> str:
    return f"chat:conversation-version:{conversation_id}"


class CachedConversations:
    """Conversations by id, from a cache checked against the shared version (see the module's docstring).

    What it returns is shared between calls: read it, never change it.
    """

    def __init__(
        self, repo: ConversationRepository, kv: KeyValueStore, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._repo = repo
        self._kv = kv
        self._entries: LocalEntries[uuid.UUID, Conversation] = LocalEntries(MAX_ENTRIES, ENTRY_SECONDS, clock)

    async def conversation(self, conversation_id: uuid.UUID) -> Conversation | None:
        version = await self._kv.get(version_key(conversation_id))  # before the read: see the docstring
        cached = self._entries.current(conversation_id, version)
        if cached is not None:
            return cached
        found = await self._repo.conversation(conversation_id)
        if found is None:
            self._entries.drop(conversation_id)
            return None
        self._entries.keep(conversation_id, found, version)
        return found

    async def changed(self, conversation_id: uuid.UUID) -> None:
        """Call after committing a change of members, title or model, or a deletion."""
        self._entries.drop(conversation_id)
        await self._kv.set(version_key(conversation_id), uuid.uuid4().hex, ttl_seconds=VERSION_SECONDS)
