"""The shared limits kernel: fixed-window rate limits and reserved allowances over the key-value port, and
per-owner slot counters, so every service's fair-share rules live in one place.

- `FixedWindow`: at most `limit` hits per `window_seconds` per key (one INCR with an expiry: works across
  processes on Redis). Over the limit: QuotaExceeded with RetryInfo (the window's rest) and a QuotaFailure.
- `Allowance`: an amount per period (a token budget per UTC day) that is reserved before the work, atomically,
  and settled to what was really used afterwards. A reservation never takes the counter past the limit: it is
  added, and what went over is given back at once (a concurrent reservation may see the short-lived excess and
  be granted less, never more, than what is left).
- `Slots`: how many things (streams, generations) one owner holds at once in this process. Process-local on
  purpose: a slot is tied to a live stream here, and a crashed process must not leave slots taken in Redis.
"""

from __future__ import annotations

import contextlib
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from pynode.core.errors import QuotaExceeded, QuotaViolation
from pynode.core.kv import KeyValueStore

MINUTE = 60.0


@dataclass(frozen=True)
class Quota:
    """One limit as a caller sees it in the error: QuotaFailure subject and description, ErrorInfo reason."""

    subject: str  # e.g. "ai:requests_per_minute", "login:address"
    description: str  # e.g. "generations per user per minute"
    reason: str = "RATE_LIMITED"

    def exceeded(self, message: str, retry_after: float) -> QuotaExceeded:
        """The error for this quota: `message` says what to do next."""
        return QuotaExceeded(
            message,
            retry_after=retry_after,
            reason=self.reason,
            violations=[QuotaViolation(self.subject, self.description)],
        )


class FixedWindow:
    """Hits per key in fixed windows, in the key-value store."""

    def __init__(self, kv: KeyValueStore) -> None:
        self._kv = kv

    async def hit(self, key: str, limit: int, quota: Quota, *, what: str, window_seconds: float = MINUTE) -> None:
        """Count one hit on `key`; QuotaExceeded past `limit` in this window (0: no limit).

        `what` opens the message ("at most 60 messages per minute"); the retry delay is appended.
        """
        if limit <= 0:
            return
        count, ttl = await self._kv.incr(key, window_seconds)
        if count > limit:
            wait = ttl if ttl > 0 else window_seconds
            raise quota.exceeded(f"{what}; retry in {max(1, round(wait))} s", wait)


@dataclass
class Reservation:
    """An amount taken from an allowance: `granted` of it, until settled."""

    key: str
    granted: int
    ttl_seconds: float
    settled: bool = False


class Allowance:
    """An amount per key and period, reserved up front and settled afterwards."""

    def __init__(self, kv: KeyValueStore) -> None:
        self._kv = kv

    async def reserve(self, key: str, want: int, limit: int, *, at_least: int, ttl_seconds: float) -> Reservation:
        """Take up to `want` of what is left under `limit` on `key`.

        Grants `want` when it fits, else what is left if that is at least `at_least`; otherwise takes nothing
        and returns a reservation of 0 (the caller decides what to refuse with). Atomic across processes: the
        whole amount is added in one INCRBY and the part over the limit given back in another.
        """
        want = max(0, want)
        if want == 0:
            return Reservation(key, 0, ttl_seconds, settled=True)
        total, _ = await self._kv.incr(key, ttl_seconds, want)
        over = total - limit
        granted = want if over <= 0 else want - over
        if granted < max(1, at_least):
            await self._kv.incr(key, ttl_seconds, -want)
            return Reservation(key, 0, ttl_seconds, settled=True)
        if granted < want:
            await self._kv.incr(key, ttl_seconds, granted - want)
        return Reservation(key, granted, ttl_seconds)

    async def used(self, key: str) -> int:
        """What is taken on `key` now (reserved and settled)."""
        return int(await self._kv.get(key) or 0)

    def settle(self, reservation: Reservation, used: int) -> Coroutine[Any, Any, None]:
        """Replace the reservation by what was really used (more or less than granted).

        Marks it settled at once, so a second call is a no-op even while the first is not awaited yet (a
        caller may hand the returned coroutine to a task of its own).
        """
        change = 0 if reservation.settled else used - reservation.granted
        reservation.settled = True
        return self._add(reservation, change)

    async def _add(self, reservation: Reservation, change: int) -> None:
        if change:
            await self._kv.incr(reservation.key, reservation.ttl_seconds, change)


class Slots:
    """At most `limit` held at once per owner (0: no limit), in this process."""

    def __init__(self, limit: int, quota: Quota, what: str) -> None:
        self.limit = limit
        self.quota = quota
        self.what = what  # the refusal's message: "at most 4 generations at once per user; ..."
        self._held: dict[str, int] = {}

    def held(self, owner: str | None = None) -> int:
        """Slots one owner holds now, or (None) everybody's."""
        return sum(self._held.values()) if owner is None else self._held.get(owner, 0)

    def take(self, owner: str) -> None:
        """Take a slot; QuotaExceeded (retry in a second) when the owner holds `limit` already."""
        if self.limit and self._held.get(owner, 0) >= self.limit:
            raise self.quota.exceeded(self.what, 1.0)
        self._held[owner] = self._held.get(owner, 0) + 1

    def give_back(self, owner: str) -> None:
        left = self._held.get(owner, 0) - 1
        if left > 0:
            self._held[owner] = left
        else:
            self._held.pop(owner, None)

    @contextlib.contextmanager
    def hold(self, owner: str) -> Iterator[None]:
        """A slot for the block's duration (works around an async generator's body too)."""
        self.take(owner)
        try:
            yield
        finally:
            self.give_back(owner)
