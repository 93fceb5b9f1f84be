"""Ordered worker threads for uploads to local files: a lane is a named pool of one thread, and each upload
has a queue of its chunks on one lane.

A chunk's SHA-256 and its write to the file are one piece of work, and an upload's chunks must go in order.
The loop puts each chunk in the upload's queue and goes back to the network; one trip to the lane's thread at
a time takes chunks out of the queue, as long as there are any (at most TRIP_CHUNKS, then the trip goes to the
back of the lane, so uploads that share a lane take turns). While the disk keeps up, an upload costs a trip
per burst of chunks rather than a trip and a wake-up of the loop per chunk (the profile's thread hops); the
loop waits only when the queue holds more than its depth, and is woken when half of it is written. A fixed
number of lanes bounds the threads whatever the number of uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import deque
from collections.abc import Callable
from concurrent import futures

from pynode.core.executors import Executors
from pynode.files import pools
from pynode.files.ports import Chunk

LANES = 4
TRIP_CHUNKS = 8  # chunks one trip takes before the upload's next trip queues behind the lane's other uploads


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class LaneStopped(RuntimeError):
    """The lane's thread pool stopped (the process is stopping) before an upload's chunks were written."""


class Lane:
    """One upload's queue on a lane: `work` runs on each chunk put, in order, on the lane's thread."""

    def __init__(self, executor: futures.ThreadPoolExecutor, work: Callable[[Chunk], None], depth: int) -> None:
        self._executor = executor
        self._work = work
        self._depth = depth
        self._lock = threading.Lock()  # the loop and the lane's thread share the fields below
        self._queue: deque[Chunk] = deque()
        self._queued = 0  # bytes put and not yet worked on (the one being worked on included)
        self._busy = False  # a trip is queued on the lane or running
        self._failure: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def put(self, chunk: Chunk) -> None:
        """Queue a chunk; returns at once unless the queue holds more than its depth (then when it has room).
        Raises the failure of an earlier chunk's work."""
        self._raise()
        self._loop = asyncio.get_running_loop()
        with self._lock:
            self._queue.append(chunk)
            self._queued += len(chunk)
            start, self._busy = not self._busy, True
        if start:
            self._submit()
        if self._queued > self._depth:  # full: on again once half is written (a wake-up per half, not per chunk)
            await self._until(lambda: self._queued <= self._depth // 2)
        self._raise()

    async def drain(self) -> None:
        """Wait until every chunk put was worked on; raises the first failure."""
        await self._until(lambda: not self._busy)
        self._raise()

    async def stop(self) -> None:
        """Drop the chunks not started; wait for the one being worked on (it still uses the file)."""
        with self._lock:
            self._queued -= sum(len(c) for c in self._queue)
            self._queue.clear()
        await self._until(lambda: not self._busy)

    def _raise(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _until(self, condition: Callable[[], bool]) -> None:
        while True:
            with self._lock:  # checked under the lock the thread changes it under: no wake-up is missed
                if condition() or self._failure is not None:
                    return
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter

    def _submit(self) -> None:
        try:
            trip = self._executor.submit(self._trip)
        except RuntimeError:  # the pool was shut down
            self._fail(LaneStopped("the upload lanes stopped"))
            return
        trip.add_done_callback(self._dropped)

    def _dropped(self, trip: futures.Future[None]) -> None:
        if trip.cancelled():  # the pool was shut down with this trip still queued
            self._fail(LaneStopped("the upload lanes stopped"))

    def _trip(self) -> None:
        """In the lane's thread: work on queued chunks in order, then hand the lane over (or stop when none)."""
        for _ in range(TRIP_CHUNKS):
            with self._lock:
                if not self._queue:
                    self._busy = False
                    waiter, self._waiter = self._waiter, None
                    break
                chunk = self._queue.popleft()
            try:
                self._work(chunk)
            except BaseException as exc:  # the upload's failure: raised on the loop by its next put or drain
                self._fail(exc)
                return
            with self._lock:
                self._queued -= len(chunk)
                waiter = None
                if self._queued <= self._depth // 2:  # what a full queue's put waits for
                    waiter, self._waiter = self._waiter, None
            self._wake(waiter)
        else:
            self._submit()  # more to do: behind the other uploads on this lane
            return
        self._wake(waiter)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = exc
            self._queue.clear()
            self._queued = 0
            self._busy = False
            waiter, self._waiter = self._waiter, None
        self._wake(waiter)

    def _wake(self, waiter: asyncio.Future[None] | None) -> None:
        if waiter is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                self._loop.call_soon_threadsafe(_resolve, waiter)


class Lanes:
    """`count` one-thread pools, handed to uploads in turn. Taken from the process's `executors` (which close
    them), or made here and closed by `close`."""

    def __init__(self, count: int = LANES, executors: Executors | None = None) -> None:
        self._own = executors is None
        self._pools = [pools.pool(executors, f"files-lane-{i}", 1) for i in range(count)]
        self._turn = itertools.count()

    def lane(self, work: Callable[[Chunk], None], depth: int) -> Lane:
        """A queue for one upload on the next lane: `work` runs on its chunks; `depth` bytes may wait."""
        return Lane(self._pools[next(self._turn) % len(self._pools)].executor, work, depth)

    def close(self) -> None:
        """Stop the lanes' threads when this made them (after the uploads ended)."""
        if self._own:
            pools.stop_own(*self._pools)
