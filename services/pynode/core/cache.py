"""The pieces every process-local cache is made of: bounded entries with an age and an optional version, and
the event-feed subscription that tells a cache what other processes changed.

A cache is an adapter that implements the port it speeds up (`CachedUsers(SqlUsers)`); these two classes are
what such adapters share, so LRU order, ages, versions and reconnects behave the same in every service.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from pynode.core.events import EventFeed

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


@dataclass(frozen=True)
class _Entry(Generic[Value]):
    value: Value
    version: str | None
    expires: float


class LocalEntries(Generic[Key, Value]):
    """At most `max_entries` values, each for at most `entry_seconds`, the least recently used going first.

    An entry may carry the version of the shared store it was read under (`keep(k, v, version)`); `current(k,
    version)` returns it only while the store still holds that version, so a change made by another process
    is seen at the next read of the version, and the age is the backstop for a lost version write."""

    def __init__(self, max_entries: int, entry_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_entries
        self._seconds = entry_seconds
        self._clock = clock
        self._entries: OrderedDict[Key, _Entry[Value]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._entries)

    def get(self, key: Key) -> Value | None:
        """The value within its age, whatever version it carries."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.value

    def current(self, key: Key, version: str | None) -> Value | None:
        """The value when it carries `version` (the store's now) and is within its age; else None."""
        entry = self._entries.get(key)
        if entry is None or entry.version != version or entry.expires <= self._clock():
            return None
        self._entries.move_to_end(key)
        return entry.value

    def take(self, key: Key) -> tuple[Value, str | None] | None:
        """Remove the entry; its value and version when it was within its age."""
        entry = self._entries.pop(key, None)
        if entry is None or entry.expires <= self._clock():
            return None
        return entry.value, entry.version

    def keep(self, key: Key, value: Value, version: str | None = None, seconds: float | None = None) -> None:
        """Remember `value` (for `seconds` when shorter than the cache's age)."""
        age = self._seconds if seconds is None else min(seconds, self._seconds)
        self._entries[key] = _Entry(value, version, self._clock() + age)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def drop(self, key: Key) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


class FeedInvalidation:
    """Drops a cache's entries when their ids are published on a channel of the event feed.

    While the feed is not live (connecting, reconnecting) the cache must not trust what it remembers:
    `live` says so, and a reconnection drops everything, since announcements may have been missed. The
    generation counts invalidations, so a read that raced one (`generation` changed between its start and
    end) is not remembered."""

    def __init__(self, feed: EventFeed, channel: str, drop: Callable[[str], None], clear: Callable[[], None]) -> None:
        self._drop = drop
        self._clear = clear
        self.generation = 0
        self._subscription = feed.subscribe(channel, self.drop, self.clear)

    @property
    def live(self) -> bool:
        """Whether announcements are arriving, so remembered entries may be trusted."""
        return self._subscription.live

    def drop(self, key: str) -> None:
        """Drop `key` (announced, or changed by this process: a read racing it is not remembered either)."""
        self.generation += 1
        self._drop(key)

    def clear(self) -> None:
        """Drop everything (a reconnection: announcements may have been missed)."""
        self.generation += 1
        self._clear()
