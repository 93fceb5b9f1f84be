"""Process-local cache entries tagged with the shared version they were read under (membership.py, recent.py).

An entry is current while the version it carries is the one the shared key-value store holds now, and for at
most `entry_seconds` (the backstop for a change whose version write was lost). The least recently used entries
go first past `max_entries`.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

Value = TypeVar("Value")


@dataclass(frozen=True)
class _Entry(Generic[Value]):
    value: Value
    version: str | None
    expires: float


class VersionedEntries(Generic[Value]):
    """Entries by conversation id, each with the version it was read under."""

    def __init__(self, max_entries: int, entry_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_entries
        self._seconds = entry_seconds
        self._clock = clock
        self._entries: OrderedDict[uuid.UUID, _Entry[Value]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[uuid.UUID]:
        return iter(self._entries)

    def current(self, key: uuid.UUID, version: str | None) -> Value | None:
        """The entry's value when it carries `version` (the store's now) and is within its age; else None."""
        entry = self._entries.get(key)
        if entry is None or entry.version != version or entry.expires <= self._clock():
            return None
        self._entries.move_to_end(key)
        return entry.value

    def take(self, key: uuid.UUID) -> tuple[Value, str | None] | None:
        """Remove the entry; its value and version when it was within its age."""
        entry = self._entries.pop(key, None)
        if entry is None or entry.expires <= self._clock():
            return None
        return entry.value, entry.version

    def keep(self, key: uuid.UUID, value: Value, version: str | None) -> None:
        self._entries[key] = _Entry(value, version, self._clock() + self._seconds)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def drop(self, key: uuid.UUID) -> None:
        self._entries.pop(key, None)
