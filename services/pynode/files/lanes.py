"""Ordered worker threads for uploads to local files.

A chunk's SHA-256 and its write to the file are one trip to a thread, and several chunks of an upload may wait
behind the one being received (the loop keeps reading from the network meanwhile). They must be hashed and
written in order, so each upload sticks to one lane: a single worker thread, shared with other uploads in turn.
A fixed number of lanes bounds the threads whatever the number of uploads.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from concurrent import futures

LANES = 4


class Lane:
    """One upload's place on a lane: what it runs there runs in order."""

    def __init__(self, executor: futures.ThreadPoolExecutor) -> None:
        self._executor = executor
        self._submitted: list[futures.Future[None]] = []

    def run(self, work: Callable[[bytes], None], chunk: bytes) -> asyncio.Future[None]:
        submitted = self._executor.submit(work, chunk)
        self._submitted = [f for f in self._submitted if not f.done()]
        self._submitted.append(submitted)
        return asyncio.wrap_future(submitted)

    async def stop(self) -> None:
        """Drop what has not started; wait for what has (it still uses the file)."""
        for submitted in self._submitted:
            submitted.cancel()
        running = [f for f in self._submitted if not f.done()]
        if running:
            await asyncio.to_thread(futures.wait, running)


class Lanes:
    """LANES single-thread executors, handed to uploads in turn."""

    def __init__(self, count: int = LANES) -> None:
        self._executors = [futures.ThreadPoolExecutor(1, f"upload-lane-{i}") for i in range(count)]
        self._turn = itertools.count()

    def lane(self) -> Lane:
        return Lane(self._executors[next(self._turn) % len(self._executors)])

    def close(self) -> None:
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)
