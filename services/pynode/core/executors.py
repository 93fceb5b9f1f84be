"""Named, bounded thread pools for blocking work (bcrypt, the S3 SDK, SQLite, file writes, image decoding).

The app builds one `Executors` per process and hands it to every module in the infrastructure; a module asks
for its pool by name and size. Nothing blocking runs on the loop's default pool: that pool is shared with
the event loop's own needs (DNS lookups), unbounded by what the work needs, and never closed on stop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from pynode.core import tracing

P = ParamSpec("P")
T = TypeVar("T")


class BlockingPool:
    """One named pool of threads: `await pool.run(fn, *args)` runs `fn` on one of them."""

    def __init__(self, name: str, threads: int, initializer: Callable[[], object] | None = None) -> None:
        self.name = name
        self.threads = threads
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix=name, initializer=initializer)

    async def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(function, *args, **kwargs) if kwargs else functools.partial(function, *args)
        if tracing.tracer() is not None:  # the thread's spans (SQLite statements) join the caller's trace
            call = functools.partial(contextvars.copy_context().run, call)
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    def close(self) -> None:
        """Finish the work already given, then stop the threads."""
        self.executor.shutdown(wait=True, cancel_futures=False)


class Executors:
    """Every blocking pool of one process, by name; closed together when the process stops."""

    def __init__(self) -> None:
        self._pools: dict[str, BlockingPool] = {}

    def pool(self, name: str, threads: int, initializer: Callable[[], object] | None = None) -> BlockingPool:
        """The pool called `name`, made with `threads` threads on first request (later requests share it);
        `initializer` runs in each of its threads as it starts (bcrypt's lower priority)."""
        found = self._pools.get(name)
        if found is None:
            found = self._pools[name] = BlockingPool(name, max(1, threads), initializer)
        return found

    def names(self) -> list[str]:
        return sorted(self._pools)

    async def close(self) -> None:
        """Wait for running work and stop every pool (in a thread: shutdown blocks)."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await asyncio.to_thread(pool.close)
