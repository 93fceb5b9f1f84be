"""In-process EventStreams: the embedded default, where every reader lives in this process."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator

from pynode.core.streams import Backlog, StreamEvent, event_key


class _Log:
    """One stream: its kept events, the newest id trimmed away, and the readers waiting for more."""

    def __init__(self, max_len: int) -> None:
        self.events: deque[tuple[tuple[int, int], StreamEvent]] = deque(maxlen=max_len)
        self.trimmed_up_to = (0, 0)
        self.changed = asyncio.Event()


class MemoryEventStreams:
    """Streams as bounded deques of right-sized payload copies; ids `0-N` from one counter per process."""

    def __init__(self, max_len: int = 10_000) -> None:
        self._max_len = max_len
        self._logs: dict[str, _Log] = {}
        self._ids = itertools.count(1)
        self._closed = False

    def _log(self, stream: str) -> _Log:
        found = self._logs.get(stream)
        if found is None:
            found = self._logs[stream] = _Log(self._max_len)
        return found

    async def append(self, stream: str, payload: bytes) -> str:
        log = self._log(stream)
        key = (0, next(self._ids))
        if len(log.events) == self._max_len:
            log.trimmed_up_to = log.events[0][0]
        # A copy of exactly its length: the payload is kept for up to `max_len` events, and orjson (which encodes
        # chat's events) returns bytes whose buffer is over-allocated and never shrunk, 4 KiB for a 150-byte event.
        # Kept as they came, a busy conversation's 10,000 events held 60 MiB (the soak's RSS growth), not 2.
        log.events.append((key, StreamEvent(f"0-{key[1]}", bytes(memoryview(payload)))))
        log.changed.set()
        log.changed = asyncio.Event()
        return f"0-{key[1]}"

    async def append_many(self, stream: str, payloads: list[bytes]) -> list[str]:
        return [await self.append(stream, payload) for payload in payloads]

    async def last_id(self, stream: str) -> str:
        log = self._logs.get(stream)
        return log.events[-1][1].id if log and log.events else "0-0"

    async def read_after(self, stream: str, after: str, until: str | None = None) -> Backlog:
        log = self._logs.get(stream)
        if log is None:
            return Backlog([], False)
        start = event_key(after)
        end = event_key(until) if until is not None else None
        events = [e for k, e in log.events if k > start and (end is None or k <= end)]
        return Backlog(events, start < log.trimmed_up_to)

    async def follow(self, stream: str, after: str) -> AsyncIterator[list[StreamEvent]]:
        position = event_key(after)
        while not self._closed:
            log = self._log(stream)
            waiter = log.changed
            batch = [e for k, e in log.events if k > position]
            if batch:
                position = event_key(batch[-1].id)
                yield batch
                continue
            await waiter.wait()

    async def close(self) -> None:
        self._closed = True
        for log in self._logs.values():
            log.changed.set()
