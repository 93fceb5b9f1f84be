"""Per-deployment admission and health: a concurrency cap with a bounded queue, and a circuit breaker.

A deployment is one `provider/model`. The gate never lets requests pile up without end: past the cap they
wait in a queue of bounded length, and past that they are refused at once (RESOURCE_EXHAUSTED with a retry
delay). Waiters are admitted round-robin across users. The breaker counts consecutive failures (a success
resets the count); past the limit the deployment is skipped for a cooldown,
after which one request tries it again (a failure then re-opens it at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque

from pynode.core.errors import QuotaExceeded, QuotaViolation

QUEUE_SHARE = 0.25  # of a deployment's queue, the most one user's waiting generations may take


class Gate:
    """At most `limit` generations at once on one deployment, `queue` more waiting, admitted fairly.

    Waiters queue in lanes (one per user): when a slot frees, it goes to the head of the lane whose turn it
    is, and that lane moves to the back, so one user's queue depth never delays the others more than one
    turn each. A lane may hold at most `share` of the queue.
    """

    def __init__(self, deployment: str, limit: int, queue: int, share: int | None = None) -> None:
        self.deployment = deployment
        self.limit = limit
        self.queue = queue
        self.share = share if share is not None else max(1, math.ceil(queue * QUEUE_SHARE))
        self.active = 0
        self._lanes: dict[str, deque[asyncio.Future[None]]] = {}  # insertion order is the round-robin order

    @property
    def waiting(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    def _busy(self, subject: str, rule: str) -> QuotaExceeded:
        return QuotaExceeded(
            f"{self.deployment} is busy ({self.active} generations running, {self.waiting} waiting); retry shortly",
            retry_after=1.0,
            reason="MODEL_BUSY",
            violations=[QuotaViolation(subject, rule)],
        )

    async def acquire(self, lane: str = "") -> None:
        """Take a slot, waiting in `lane` if need be; QuotaExceeded when the queue (or the lane's share) is full."""
        if self.active < self.limit and not self._lanes:
            self.active += 1
            return
        if self.waiting >= self.queue:
            raise self._busy(f"deployment:{self.deployment}", f"{self.limit} at once, {self.queue} queued")
        waiters = self._lanes.get(lane)
        if waiters is not None and len(waiters) >= self.share:
            raise self._busy(
                f"deployment:{self.deployment}:per_user", f"{self.share} of the {self.queue} queued per user"
            )
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lanes.setdefault(lane, deque()).append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release()  # the slot was handed over as the waiter went away: pass it on
            else:
                self._leave(lane, turn)
            raise

    def _leave(self, lane: str, turn: asyncio.Future[None]) -> None:
        waiters = self._lanes.get(lane)
        if waiters is None:
            return
        with contextlib.suppress(ValueError):
            waiters.remove(turn)
        if not waiters:
            del self._lanes[lane]

    def release(self) -> None:
        """Give the slot to the next lane's first waiter (the slot stays taken), or free it."""
        while self._lanes:
            lane = next(iter(self._lanes))
            waiters = self._lanes.pop(lane)
            turn = waiters.popleft()
            if waiters:
                self._lanes[lane] = waiters  # to the back: the next slot goes to another lane
            if not turn.done():
                turn.set_result(None)
                return
        self.active -= 1


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
