"""Background tasks of a service: stopping one the same way everywhere, and periodic sweeps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("pynode.tasks")


async def stop(task: asyncio.Future[Any] | None) -> None:
    """Cancel `task` and wait until it has finished. Waiting with `asyncio.wait` never raises the task's own
    cancellation here, so a caller that is itself being cancelled still is."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    await asyncio.wait([task])


class Periodic:
    """Runs `work` now and then every `seconds` until stopped: a service's sweeps (retention, expiry).

    Stopping waits for a run in progress instead of cancelling it: a sweep cancelled in the middle of a
    database statement leaves a connection to be reset while the process shuts down (and logs an error). A
    failed run is logged and retried at the next interval.
    """

    def __init__(self, name: str, seconds: float, work: Callable[[], Awaitable[int]], what: str) -> None:
        self.name = name
        self.seconds = seconds
        self._work = work
        self._what = what
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                done = await self._work()
                if done:
                    log.info("%s: %d %s", self.name, done, self._what)
            except Exception as exc:  # a database outage must not end the loop
                log.warning("%s failed: %s", self.name, type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.seconds)

    async def stop(self) -> None:
        """Stop after the run in progress, if any."""
        self._stopping.set()
        await asyncio.wait([self._task])
