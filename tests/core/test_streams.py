"""The EventStreams contract on the in-process streams and on Redis Streams: following leaves no gap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pynode.app.bootstrap import build_streams
from pynode.core.adapters.redis_streams import RedisEventStreams
from pynode.core.streams import EventStreams
from tests.backends import Backend, unique
from tests.conftest import make_settings


@pytest.fixture
async def streams(backend: Backend, tmp_path: Path) -> AsyncIterator[EventStreams]:
    streams = build_streams(make_settings(backend, tmp_path).stores)
    yield streams
    await streams.close()


class HeldPlacing:
    """Holds a new Redis tail's first read (where it starts) until released: the window in which an event
    appended after a follower's backlog would be in neither the backlog nor the tail."""

    def __init__(self, streams: RedisEventStreams) -> None:
        self.asked = asyncio.Event()
        self._release = asyncio.Event()
        client: Any = streams._client
        original = client.xrevrange

        async def xrevrange(*args: Any, **kwargs: Any) -> Any:
            if asyncio.current_task() is not self.caller:  # the tail's task, not the test's own calls
                self.asked.set()
                await self._release.wait()
            return await original(*args, **kwargs)

        self.caller = asyncio.current_task()
        client.xrevrange = xrevrange

    def release(self) -> None:
        self._release.set()


async def test_an_event_appended_while_a_follower_starts_is_followed(streams: EventStreams) -> None:
    stream = unique("s")
    await streams.append(stream, b"before")
    after = await streams.last_id(stream)
    held = HeldPlacing(streams) if isinstance(streams, RedisEventStreams) else None
    follower = streams.follow(stream, after)
    first = asyncio.ensure_future(anext(follower))
    if held is not None:
        await asyncio.wait_for(held.asked.wait(), 10)
    # The follower goes as far as it can meanwhile (a follower that read its backlog now would miss what follows).
    done, _ = await asyncio.wait([first], timeout=0.2)
    assert not done, "nothing was appended after `after` yet"
    await streams.append(stream, b"meanwhile")
    if held is not None:
        held.release()
    batch = await asyncio.wait_for(first, 10)
    assert [e.payload for e in batch] == [b"meanwhile"]
    await streams.append(stream, b"later")
    assert [e.payload for e in await asyncio.wait_for(anext(follower), 10)] == [b"later"]
    await follower.aclose()  # type: ignore[attr-defined]
