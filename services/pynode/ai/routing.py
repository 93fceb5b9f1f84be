"""Per-deployment admission and health: a concurrency cap with a bounded queue, and a circuit breaker.

A deployment is one `provider/model`. The gate never lets requests pile up without end: past the cap they
wait in a queue of bounded length, and past that they are refused at once (RESOURCE_EXHAUSTED with a retry
delay). The breaker counts consecutive failures; past the limit the deployment is skipped for a cooldown,
after which one request tries it again (a failure then re-opens it at once).
"""

from __future__ import annotations

import asyncio
import time

from pynode.core.errors import QuotaExceeded, QuotaViolation


class Gate:
    """At most `limit` generations at once on one deployment, `queue` more waiting."""

    def __init__(self, deployment: str, limit: int, queue: int) -> None:
        self.deployment = deployment
        self.limit = limit
        self.queue = queue
        self.active = 0
        self.waiting = 0
        self._free = asyncio.Semaphore(limit)

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if need be; QuotaExceeded when the queue is full."""
        if self._free.locked() and self.waiting >= self.queue:
            raise QuotaExceeded(
                f"{self.deployment} is busy ({self.active} generations running, {self.waiting} waiting); retry shortly",
                retry_after=1.0,
                reason="MODEL_BUSY",
                violations=[
                    QuotaViolation(f"deployment:{self.deployment}", f"{self.limit} at once, {self.queue} queued")
                ],
            )
        self.waiting += 1
        try:
            await self._free.acquire()
        finally:
            self.waiting -= 1
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._free.release()


class Breaker:
    """Skips a deployment for `cooldown` seconds after `failures` failures in a row."""

    def __init__(self, failures: int, cooldown: float) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self.count = 0
        self.open_until = 0.0

    def allows(self) -> bool:
        return time.monotonic() >= self.open_until

    def cooling_for(self) -> float:
        return max(0.0, self.open_until - time.monotonic())

    def failed(self) -> None:
        self.count += 1
        if self.count >= self.failures:
            self.open_until = time.monotonic() + self.cooldown
            self.count = self.failures - 1  # half-open afterwards: one more failure re-opens it

    def succeeded(self) -> None:
        self.count = 0
        self.open_until = 0.0
