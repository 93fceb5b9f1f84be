"""Background work of a process: one `TaskSet` owns every task that outlives the call that started it.

A task set keeps a strong reference to each task (the loop keeps only weak ones), logs the failure of any
task once (so no "Task exception was never retrieved"), runs periodic sweeps, starts a named task at most
once (a writer's flush loop, a feed's reader), and closes everything with a time limit: periodic work
finishes its current run, the rest is cancelled after the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("pynode.tasks")

T = TypeVar("T")


async def stop(task: asyncio.Future[Any] | None) -> None:
    """Cancel `task` and wait until it has finished. Waiting with `asyncio.wait` never raises the task's own
    cancellation here, so a caller that is itself being cancelled still is."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    await asyncio.wait([task])


class TaskSet:
    """The tasks one component runs in the background, closed together.

    `spawn` starts a task and forgets it when it ends (a failure is logged with the set's name);
    `once(key, ...)` starts the task for `key` unless one is running; `every` runs a sweep periodically.
    `close(grace)` lets periodic runs in progress finish (a sweep cancelled in the middle of a database
    statement leaves a connection to reset while the process stops), waits up to `grace` seconds for the
    others, then cancels what is left and waits for it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._named: dict[str, asyncio.Task[Any]] = {}
        self._stopping = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def closing(self) -> bool:
        """Whether `close` has begun (periodic work stops scheduling new runs)."""
        return self._stopping.is_set()

    def spawn(self, work: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Run `work` in the background, owned by this set."""
        if self._closed:
            work.close()
            raise RuntimeError(f"task set {self.name} is closed")
        task = asyncio.get_running_loop().create_task(work, name=name or f"{self.name}")
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def once(self, key: str, start: Callable[[], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
        """The running task for `key`, started with `start()` when there is none (or it has ended)."""
        found = self._named.get(key)
        if found is not None and not found.done():
            return found
        task = self.spawn(start(), name=f"{self.name}:{key}")
        self._named[key] = task
        return task

    def every(self, name: str, seconds: float, work: Callable[[], Awaitable[int]], what: str) -> asyncio.Task[None]:
        """Run `work` now and then every `seconds` until the set closes; a positive count it returns is logged
        as "<name>: <count> <what>". A failed run is logged and retried at the next interval."""
        return self.spawn(self._periodic(name, seconds, work, what), name=name)

    async def _periodic(self, name: str, seconds: float, work: Callable[[], Awaitable[int]], what: str) -> None:
        while not self._stopping.is_set():
            try:
                done = await work()
                if done:
                    log.info("%s: %d %s", name, done, what)
            except Exception as exc:  # a database outage must not end the loop
                log.warning("%s failed: %s", name, type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)

    async def wait(self, seconds: float | None = None) -> None:
        """Wait up to `seconds` for the tasks running now to end; the set stays open."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=seconds)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("%s: background task %s failed", self.name, task.get_name(), exc_info=error)

    async def close(self, grace: float = 5.0) -> None:
        """Stop periodic work after its current run, wait up to `grace` seconds, cancel the rest, wait for all."""
        self._stopping.set()
        self._closed = True
        pending = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
