"""EventStreams on Redis Streams (XADD, XRANGE, XREAD): every process of the mesh sees every event.

One reader task per followed stream per process (a `_Tail`) blocks on XREAD and hands each batch to
that process's followers, so 200 subscribers of one conversation cost one Redis connection, not 200.
A follower registers with the tail, waits until a new tail knows where it starts reading, then reads the
backlog, and drops what it has already seen: the backlog and the tail overlap, they never leave a gap. (Read
before the tail had placed itself, an event appended between the backlog and the tail's first position would be
in neither.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as redis

from pynode.core import tasks
from pynode.core.adapters.redis_kv import unavailable_on_outage
from pynode.core.errors import Unavailable
from pynode.core.streams import Backlog, StreamEvent, event_key
from pynode.core.tasks import TaskSet

log = logging.getLogger("pynode.streams")

BLOCK_MS = 5_000
# Streams nobody appends to for this long are dropped by Redis itself.
IDLE_SECONDS = 7 * 86400


def _decode(entries: list[Any]) -> list[StreamEvent]:
    return [StreamEvent(_text(event_id), fields.get(b"p", b"")) for event_id, fields in entries]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Tail:
    """This process's one reader of one stream, fanning batches out to local followers."""

    def __init__(self, client: Any, key: str, readers: TaskSet) -> None:
        self.key = key
        self.queues: set[asyncio.Queue[list[StreamEvent] | BaseException]] = set()
        self._client = client
        self._readers = readers
        self._task: asyncio.Task[None] | None = None
        self._placed = asyncio.Event()  # set once the reader knows the id it reads after
        self._stopping = False

    @property
    def alive(self) -> bool:
        return self._task is None or not self._task.done()

    def start(self) -> None:
        # `spawn`, not `once(key)`: a tail being stopped may still run while its successor for the key starts.
        if self._task is None:
            self._task = self._readers.spawn(self._run(), name=f"stream-tail {self.key}")

    async def placed(self) -> None:
        """Wait until the reader knows where it starts (or has ended): a backlog read after this meets it."""
        assert self._task is not None
        placing = asyncio.ensure_future(self._placed.wait())
        try:
            await asyncio.wait([placing, self._task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            placing.cancel()

    async def stop(self) -> None:
        # The flag first: a cancellation that lands as redis-py's own read timeout expires is turned into that
        # timeout and lost (asyncio.timeout's race), and the reader would block again for ever (a CI run hung on
        # it); it now ends at its next turn.
        self._stopping = True
        await tasks.stop(self._task)

    async def _run(self) -> None:
        try:
            newest = await self._client.xrevrange(self.key, count=1)
            position = _text(newest[0][0]) if newest else "0-0"
            self._placed.set()
            while not self._stopping:
                found = await self._client.xread({self.key: position}, block=BLOCK_MS, count=1000)
                for _key, entries in found or ():
                    batch = _decode(entries)
                    if batch:
                        position = batch[-1].id
                        for queue in list(self.queues):
                            queue.put_nowait(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis lost: followers end with UNAVAILABLE and resume from their last id
            log.warning("event stream reader lost Redis (%s)", type(exc).__name__)
            for queue in list(self.queues):
                queue.put_nowait(exc)


class RedisEventStreams:
    """The production EventStreams; keys carry the configured prefix."""

    def __init__(self, url: str, prefix: str = "devpynode:", max_len: int = 10_000) -> None:
        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=BLOCK_MS / 1000 + 5, socket_connect_timeout=2, health_check_interval=30
        )
        self._prefix = prefix + "stream:"
        self._max_len = max_len
        self._tails: dict[str, _Tail] = {}
        self._readers = TaskSet("redis-streams")  # every tail's reader, cancelled together on close

    def _k(self, stream: str) -> str:
        return self._prefix + stream

    async def append(self, stream: str, payload: bytes) -> str:
        return (await self.append_many(stream, [payload]))[0]

    @unavailable_on_outage
    async def append_many(self, stream: str, payloads: list[bytes]) -> list[str]:
        key = self._k(stream)
        async with self._client.pipeline(transaction=False) as pipe:
            for payload in payloads:
                # Exact trimming: `read_after` tells a reader it missed events from the first event kept.
                pipe.xadd(key, {"p": payload}, maxlen=self._max_len, approximate=False)
            pipe.expire(key, IDLE_SECONDS)
            *ids, _ = await pipe.execute()
        return [_text(event_id) for event_id in ids]

    @unavailable_on_outage
    async def last_id(self, stream: str) -> str:
        newest = await self._client.xrevrange(self._k(stream), count=1)
        return _text(newest[0][0]) if newest else "0-0"

    @unavailable_on_outage
    async def read_after(self, stream: str, after: str, until: str | None = None) -> Backlog:
        start = event_key(after)
        key = self._k(stream)
        events = _decode(await self._client.xrange(key, min=f"({after}", max=until or "+"))
        trimmed = False
        with contextlib.suppress(redis.ResponseError):  # no such stream: nothing was ever trimmed
            info = await self._client.xinfo_stream(key)
            # Trimming does not move max-deleted-entry-id (only XDEL does); what tells is that events were
            # added beyond those kept and `after` is older than the first kept. (When `after` is exactly the
            # newest trimmed event, the reader reloads for nothing: safe, and rare.)
            if int(info.get("entries-added", 0)) > int(info.get("length", 0)):
                first = info.get("recorded-first-entry-id") or b"0-0"
                trimmed = start < event_key(_text(first))
        return Backlog(events, trimmed)

    async def follow(self, stream: str, after: str) -> AsyncIterator[list[StreamEvent]]:
        key = self._k(stream)
        tail = self._tails.get(key)
        if tail is None or not tail.alive:
            tail = self._tails[key] = _Tail(self._client, key, self._readers)
        queue: asyncio.Queue[list[StreamEvent] | BaseException] = asyncio.Queue()
        tail.queues.add(queue)
        tail.start()
        try:
            await tail.placed()
            position = event_key(after)
            backlog = await self.read_after(stream, after)
            if backlog.events:
                position = event_key(backlog.events[-1].id)
                yield backlog.events
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise Unavailable("lost the event store; resubscribe with `after`", retry_after=1.0)
                fresh = [e for e in item if event_key(e.id) > position]
                if fresh:
                    position = event_key(fresh[-1].id)
                    yield fresh
        finally:
            tail.queues.discard(queue)
            if not tail.queues and self._tails.get(key) is tail:
                del self._tails[key]
                await tail.stop()

    async def close(self) -> None:
        tails, self._tails = list(self._tails.values()), {}
        for tail in tails:
            await tail.stop()
        await self._readers.close(grace=0)
        await self._client.aclose()
