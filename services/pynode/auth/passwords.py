"""Password policy and hashing: bcrypt off the event loop, in a bounded pool.

bcrypt reads only 72 bytes, and bcrypt 5 raises on longer input. Every
password is therefore pre-hashed: NFKC-normalised, SHA-256, base64 (44 ASCII
bytes, no NULs), then bcrypt. Nothing is ever silently truncated.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
import threading
import time
import unicodedata
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any, TypeVar

import bcrypt

from pynode.core.errors import FieldViolation, InvalidArgument, Unavailable
from pynode.core.executors import BlockingPool, Executors

T = TypeVar("T")

MIN_LENGTH = 8
MAX_LENGTH = 256


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of the 30,000 most common passwords, lower-cased."""
    text = resources.files("pynode.auth").joinpath("data/common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line and not line.startswith("#"))


def normalise(password: str) -> str:
    """NFKC, as NIST SP 800-63B suggests, so the same password typed differently matches."""
    return unicodedata.normalize("NFKC", password)


def check_policy(password: str, field: str, *, email: str = "") -> None:
    """Length and blocklist rules; no composition rules."""
    normalised = normalise(password)
    problem = ""
    if len(normalised) < MIN_LENGTH:
        problem = f"must be at least {MIN_LENGTH} characters"
    elif len(normalised) > MAX_LENGTH:
        problem = f"must be at most {MAX_LENGTH} characters"
    elif normalised.lower() in common_passwords():
        problem = "is one of the most common passwords; choose a less guessable one"
    elif email and normalised.lower() in {email.lower(), email.split("@")[0].lower()}:
        problem = "must not be your e-mail address"
    if problem:
        raise InvalidArgument(f"{field} {problem}", [FieldViolation(field, problem, "WEAK_PASSWORD")])


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(normalise(password).encode("utf-8")).digest())


def lower_priority(nice: int) -> None:
    """Make the calling thread yield its core to any ordinary thread (nice 0 disables this).

    Linux schedules threads individually. Under EEVDF a niced thread still keeps the CPU
    for the rest of its time slice when the event loop wakes, which showed as a doubled
    p99 for cheap RPCs during a login storm; a SCHED_IDLE thread is preempted at once.
    The niceness stays as the fallback where SCHED_IDLE is refused. Measured by
    scripts/bench's storm scenario.
    """
    if nice <= 0:
        return
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def hash_password(password: str, cost: int) -> bytes:
    """bcrypt of the pre-hashed password (runs in the pool; bcrypt releases the GIL)."""
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(cost))


def check_password(password: str, hashed: bytes) -> bool:
    """bcrypt check of the pre-hashed password (runs in the pool)."""
    return bcrypt.checkpw(_prehash(password), hashed)


def hashing_pool(executors: Executors, workers: int = 0, nice: int = 19) -> BlockingPool:
    """The process's bcrypt pool: `workers` threads (0: one per core), each at idle priority (`nice`)."""
    return executors.pool("bcrypt", workers or os.cpu_count() or 1, functools.partial(lower_priority, nice))


class PasswordHasher:
    """bcrypt with a fixed cost in a pool of idle-priority threads, one per core, so a login
    storm queues in the pool and never stalls other RPCs. The queue is bounded too: past it,
    calls are shed at once with a retry delay instead of waiting minutes. The pool is the
    process's (`hashing_pool`), closed by the app after every module."""

    def __init__(self, cost: int, pool: BlockingPool, queue: int = 0) -> None:
        self.cost = cost
        self.workers = pool.threads
        self.capacity = self.workers + (queue or 16 * self.workers)  # running plus waiting
        self._pool = pool
        self._dummy: bytes | None = None
        self._pending = 0
        self._seconds_per_hash = 0.25  # measured by warm_up

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        """The one way work reaches the pool."""
        if self._pending >= self.capacity:
            drain = self._pending / self.workers * self._seconds_per_hash
            raise Unavailable(
                "too many sign-ins are being checked right now; retry shortly", retry_after=drain, reason="OVERLOADED"
            )
        self._pending += 1
        try:
            # A caller that goes away (the server cancelling calls at stop) takes its queued hash with it.
            return await self._pool.run(function, *args)
        finally:
            self._pending -= 1

    async def hash(self, password: str) -> str:
        """A bcrypt hash of the pre-hashed password."""
        digest = await self._run(hash_password, password, self.cost)
        return digest.decode("ascii")

    async def verify(self, password: str, hashed: str | None) -> bool:
        """Check a password; with no hash (unknown account) check a dummy so the time is the same."""
        if not hashed:  # None: unknown account; "": an account that signs in by SSO only
            if self._dummy is None:
                self._dummy = (await self.hash("dummy password never matches")).encode("ascii")
            target, known = self._dummy, False
        else:
            target, known = hashed.encode("ascii"), True
        ok = await self._run(check_password, password, target)
        return ok and known

    async def warm_up(self) -> None:
        """Compute the dummy hash before the first login, so its cost never shows in a timing;
        time one check, for the retry delay of shed calls."""
        began = time.perf_counter()
        await self.verify("warm up", None)  # two bcrypt runs: the dummy's hash, then its check
        self._seconds_per_hash = (time.perf_counter() - began) / 2
