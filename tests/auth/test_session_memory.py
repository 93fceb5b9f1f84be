"""Each process remembers session holders between calls; the change feed makes it forget at once.

Two (SessionStore, CachedSessionLiveness) pairs on one key-value store stand for two processes
(on Redis, each has its own pub/sub connection, as separate processes would).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pynode.app.bootstrap import build_feed, build_kv
from pynode.auth.sessions import SessionStore
from pynode.core.adapters.memory_events import MemoryEventFeed
from pynode.core.adapters.memory_kv import MemoryKeyValueStore
from pynode.core.events import Deliver, EventFeed, Reset
from pynode.core.identity import CachedSessionLiveness, StoredSessionLiveness
from pynode.core.kv import KeyValueStore
from tests.backends import Backend
from tests.client import eventually
from tests.conftest import make_settings


class Process:
    """One process's session writer and its session liveness memory."""

    def __init__(self, kv: KeyValueStore, feed: EventFeed) -> None:
        self.liveness = CachedSessionLiveness(StoredSessionLiveness(kv), feed)
        self.store = SessionStore(kv, feed, self.liveness, 3600, 1)

    @property
    def remembering(self) -> bool:
        return self.liveness.remembering

    def holder_known(self, sid: str) -> tuple[str, str] | None:
        return self.liveness.holder_known(sid)

    async def holder(self, sid: str) -> tuple[str, str] | None:
        return await self.liveness.holder(sid)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


@pytest.fixture
async def two_processes(backend: Backend, tmp_path: Path) -> AsyncIterator[tuple[KeyValueStore, Process, Process]]:
    settings = make_settings(backend, tmp_path)
    kv = build_kv(settings.stores)
    feeds = [build_feed(settings.stores)]
    if backend.redis_url != "memory://":
        feeds.append(build_feed(settings.stores))
    here = Process(kv, feeds[0])
    there = Process(kv, feeds[-1])
    await eventually(lambda: here.remembering and there.remembering)
    yield kv, here, there
    for feed in feeds:
        await feed.close()
    await kv.close()


async def test_a_remembered_session_is_forgotten_when_another_process_revokes_it(
    two_processes: tuple[KeyValueStore, Process, Process],
) -> None:
    kv, here, there = two_processes
    session, _ = await here.create("u1", "user", "ua", "1.2.3.4")
    assert await there.holder(session.id) == ("u1", "user")
    # Remembered: a change behind the feed's back (never done in the code) goes unseen...
    await kv.delete(f"auth:session:{session.id}")
    assert await there.holder(session.id) == ("u1", "user")

    kept, _ = await here.create("u2", "user", "ua", "1.2.3.4")
    assert await there.holder(kept.id) == ("u2", "user")
    await here.set_role("u2", "admin")  # ...while an announced change reaches the other process
    await eventually(lambda: there.holder_known(kept.id) is None)
    assert await there.holder(kept.id) == ("u2", "admin")
    await here.revoke(kept.id)
    assert await here.holder(kept.id) is None  # the revoking process forgets before returning
    await eventually(lambda: there.holder_known(kept.id) is None)
    assert await there.holder(kept.id) is None


class _SilentFeed:
    """A feed whose subscriptions are never live, as during a Redis reconnection."""

    class _Subscription:
        live = False

        def cancel(self) -> None:
            pass

    async def publish(self, channel: str, message: str) -> None:
        pass

    def subscribe(self, channel: str, deliver: Deliver, reset: Reset) -> _Subscription:
        return self._Subscription()

    async def close(self) -> None:
        pass


async def test_nothing_is_remembered_while_the_feed_is_not_live() -> None:
    kv = MemoryKeyValueStore()
    feed: EventFeed = _SilentFeed()
    store = Process(kv, feed)
    session, _ = await store.create("u1", "user", "ua", "1.2.3.4")
    assert await store.holder(session.id) == ("u1", "user")
    await kv.delete(f"auth:session:{session.id}")
    assert await store.holder(session.id) is None


class _SlowKeyValueStore(MemoryKeyValueStore):
    """Holds every `get` until released, to interleave a change with a read in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def get(self, key: str) -> str | None:
        value = await super().get(key)
        await self.release.wait()
        return value


async def test_a_read_that_raced_a_change_is_not_remembered() -> None:
    kv = _SlowKeyValueStore()
    store = Process(kv, MemoryEventFeed())
    session, _ = await store.create("u1", "user", "ua", "1.2.3.4")
    reading = asyncio.create_task(store.holder(session.id))
    await asyncio.sleep(0)  # the read has its (old) value and waits
    kv.release.set()
    await store.set_role("u1", "admin")  # announces while the read is in flight
    assert await reading == ("u1", "user")  # that call was ordered before the change...
    assert store.holder_known(session.id) is None  # ...but its answer is not kept
    assert await store.holder(session.id) == ("u1", "admin")


class _DyingKeyValueStore(MemoryKeyValueStore):
    """Fails every delete, as if the process died in the middle of a revocation."""

    async def delete(self, *keys: str) -> int:
        raise RuntimeError("died mid-revocation")


async def test_a_change_is_announced_before_it_is_written() -> None:
    kv, feed = _DyingKeyValueStore(), MemoryEventFeed()
    dying, other = Process(kv, feed), Process(kv, feed)
    session, _ = await dying.create("u1", "user", "ua", "1.2.3.4")
    assert await other.holder(session.id) == ("u1", "user")
    with pytest.raises(RuntimeError):
        await dying.revoke(session.id)
    assert other.holder_known(session.id) is None  # it will ask the store again, not trust its memory
