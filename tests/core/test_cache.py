"""The shared pieces of process-local caches: bounded, aged, versioned entries and feed invalidation."""

from __future__ import annotations

import asyncio

from pynode.core.adapters.memory_events import MemoryEventFeed
from pynode.core.cache import FeedInvalidation, LocalEntries


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_age_out_and_the_least_recently_used_goes_first() -> None:
    clock = Clock()
    entries: LocalEntries[str, int] = LocalEntries(2, 10.0, clock)
    entries.keep("a", 1)
    entries.keep("b", 2)
    assert entries.get("a") == 1  # a is now the most recently used
    entries.keep("c", 3)
    assert list(entries) == ["a", "c"]
    clock.now += 10.0
    assert entries.get("a") is None and len(entries) == 1


def test_a_versioned_entry_is_current_only_under_its_version() -> None:
    clock = Clock()
    entries: LocalEntries[str, str] = LocalEntries(10, 10.0, clock)
    entries.keep("k", "v", version="1")
    assert entries.current("k", "1") == "v"
    assert entries.current("k", "2") is None
    assert entries.take("k") == ("v", "1")
    assert entries.take("k") is None


def test_a_shorter_age_is_kept_for_one_entry() -> None:
    clock = Clock()
    entries: LocalEntries[str, str] = LocalEntries(10, 10.0, clock)
    entries.keep("short", "v", seconds=1.0)
    entries.keep("long", "v", seconds=60.0)  # never longer than the cache's own age
    clock.now += 5.0
    assert entries.get("short") is None and entries.get("long") == "v"
    clock.now += 5.0
    assert entries.get("long") is None


async def test_feed_invalidation_drops_published_ids_and_counts_them() -> None:
    feed = MemoryEventFeed()
    entries: LocalEntries[str, int] = LocalEntries(10, 60.0)
    invalidation = FeedInvalidation(feed, "things", entries.drop, entries.clear)
    entries.keep("x", 1)
    entries.keep("y", 2)
    before = invalidation.generation
    await feed.publish("things", "x")
    await asyncio.sleep(0)
    assert entries.get("x") is None and entries.get("y") == 2
    assert invalidation.generation == before + 1
    assert invalidation.live
    await feed.close()
