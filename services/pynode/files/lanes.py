"""Ordered worker threads for uploads to local files: a lane is a named pool of one thread.

A chunk's SHA-256 and its write to the file are one trip to a thread, and several chunks of an upload may wait
behind the one being written (the loop keeps reading from the network meanwhile). They must be hashed and
written in order, so each upload sticks to one lane, shared with other uploads in turn. A fixed number of
lanes bounds the threads whatever the number of uploads.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from concurrent import futures

from pynode.core.executors import BlockingPool, Executors
from pynode.files import pools

LANES = 4


class Lane:
    """One upload's place on a lane: what it runs there runs in order."""

    def __init__(self, pool: BlockingPool) -> None:
        self._pool = pool
        self._submitted: list[futures.Future[None]] = []

    def run(self, work: Callable[[bytes], None], chunk: bytes) -> asyncio.Future[None]:
        # Submitted to the thread directly (not `pool.run`): a concurrent future can be cancelled before it starts.
        submitted = self._pool.executor.submit(work, chunk)
        self._submitted = [f for f in self._submitted if not f.done()]
        self._submitted.append(submitted)
        return asyncio.wrap_future(submitted)

    async def stop(self) -> None:
        """Drop what has not started; wait for what has (it still uses the file)."""
        for submitted in self._submitted:
            submitted.cancel()
        running = [asyncio.wrap_future(f) for f in self._submitted if not f.done()]
        self._submitted = []
        if running:
            await asyncio.wait(running)
            for ended in running:
                retrieve(ended)


def retrieve(ended: asyncio.Future[None]) -> None:
    """Mark a future's failure as seen (it is reported another way: the write that waits on the lane)."""
    if not ended.cancelled():
        ended.exception()


class Lanes:
    """`count` one-thread pools, handed to uploads in turn. Taken from the process's `executors` (which close
    them), or made here and closed by `close`."""

    def __init__(self, count: int = LANES, executors: Executors | None = None) -> None:
        self._own = executors is None
        self._pools = [pools.pool(executors, f"files-lane-{i}", 1) for i in range(count)]
        self._turn = itertools.count()

    def lane(self) -> Lane:
        return Lane(self._pools[next(self._turn) % len(self._pools)])

    def close(self) -> None:
        """Stop the lanes' threads when this made them (after the uploads ended)."""
        if self._own:
            pools.stop_own(*self._pools)
