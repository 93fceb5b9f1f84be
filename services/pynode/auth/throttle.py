"""Abuse protection: per-address and per-account rate limits, and a login lockout that an
attacker cannot turn against the account's owner.

Lockout policy (also in the README):
- failures are counted per (account, client address); after `free_failures` of them that
  address is locked out of that account for 1 s, then 2 s, 4 s, ... up to `max_seconds`;
  a success from the address clears its count;
- failures on the account from all addresses are counted over 15 minutes; past
  `flood_failures`, addresses that never signed in successfully to that account get one
  attempt per `FLOOD_SPACING_SECONDS` for the whole account, while addresses that did
  ("known good", remembered 90 days) are not slowed;
- the per-account Login rate limit (RateLimiter) is not applied to known-good addresses either:
  thirty wrong passwords from elsewhere must not stop the owner signing in from home;
- accounts are keyed by a hash of the normalised e-mail, whether or not the account exists,
  so the lockout reveals nothing about which e-mails are registered.
"""

from __future__ import annotations

import hashlib

from pynode.core.errors import QuotaExceeded, QuotaViolation
from pynode.core.kv import KeyValueStore
from pynode.core.limits import FixedWindow, Quota

WINDOW_SECONDS = 60.0
PAIR_MEMORY_SECONDS = 24 * 3600.0
FLOOD_WINDOW_SECONDS = 15 * 60.0
FLOOD_SPACING_SECONDS = 2.0
KNOWN_GOOD_SECONDS = 90 * 24 * 3600.0


def account_key(email: str) -> str:
    """A stable, non-reversible key for an account name."""
    return hashlib.sha256(email.encode()).hexdigest()[:32]


class RateLimiter:
    """Fixed one-minute windows per (action, subject kind, subject), on the shared limits kernel."""

    def __init__(self, kv: KeyValueStore, per_minute: int) -> None:
        self._window = FixedWindow(kv)
        self.per_minute = per_minute

    async def hit(self, action: str, kind: str, subject: str) -> None:
        quota = Quota(f"{action}:{kind}", f"at most {self.per_minute} {action} calls per minute per {kind}")
        await self._window.hit(
            f"rl:{action}:{kind}:{subject}",
            self.per_minute,
            quota,
            what=f"too many {action} calls",
            window_seconds=WINDOW_SECONDS,
        )


class LoginLockout:
    """Growing per-address delays, plus account-wide slowing of unknown addresses under a flood."""

    def __init__(self, kv: KeyValueStore, free_failures: int, max_seconds: int, flood_failures: int) -> None:
        self._kv = kv
        self.free_failures = free_failures
        self.max_seconds = max_seconds
        self.flood_failures = flood_failures

    async def check(self, email: str, address: str) -> None:
        """Raise QuotaExceeded when this address may not try this account now."""
        acct = account_key(email)
        wait = await self._kv.ttl(f"lock:until:{acct}:{address}")
        if wait != 0:
            raise _locked(wait if wait > 0 else self.max_seconds)
        flood = await self._kv.get(f"lock:acct:{acct}")
        if flood is None or int(flood) < self.flood_failures:
            return
        if await self._kv.set_contains(f"lock:good:{acct}", address):
            return
        if not await self._kv.compare_and_set(f"lock:slow:{acct}", None, "1", FLOOD_SPACING_SECONDS):
            raise _locked(max(await self._kv.ttl(f"lock:slow:{acct}"), 0.1))

    async def known_good(self, email: str, address: str) -> bool:
        """Whether `address` has signed in to this account before (remembered 90 days)."""
        return await self._kv.set_contains(f"lock:good:{account_key(email)}", address)

    async def failed(self, email: str, address: str) -> bool:
        """Count a wrong password; lock the address out once past the free failures (returns whether)."""
        acct = account_key(email)
        count, _ = await self._kv.incr(f"lock:pair:{acct}:{address}", PAIR_MEMORY_SECONDS)
        await self._kv.incr(f"lock:acct:{acct}", FLOOD_WINDOW_SECONDS)
        if count < self.free_failures:
            return False
        delay = min(float(self.max_seconds), 2.0 ** (count - self.free_failures))
        await self._kv.set(f"lock:until:{acct}:{address}", "1", delay)
        return True

    async def succeeded(self, email: str, address: str) -> None:
        """Clear the address's failures and remember it as known good for this account."""
        acct = account_key(email)
        await self._kv.delete(f"lock:pair:{acct}:{address}", f"lock:until:{acct}:{address}")
        await self._kv.set_add(f"lock:good:{acct}", address, KNOWN_GOOD_SECONDS)


def _locked(seconds: float) -> QuotaExceeded:
    return QuotaExceeded(
        f"too many failed sign-ins; retry in {max(1, round(seconds))} s",
        retry_after=seconds,
        reason="LOGIN_LOCKED",
        violations=[QuotaViolation("login:account_address", "failed sign-ins from this address to this account")],
    )
