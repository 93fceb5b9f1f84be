"""The key-value port: what sessions, rate limits, lockouts and caches need from Redis.

Two adapters implement it: `adapters/redis_kv.py` (redis.asyncio) and
`adapters/memory_kv.py` (the embedded default and the tests' fake at once).
"""

from __future__ import annotations

import builtins
from typing import Protocol


class KeyValueStore(Protocol):
    """Expiring strings, counters and sets, with one atomic compare-and-set."""

    async def get(self, key: str) -> str | None:
        """The value, or None when missing or expired."""

    async def get_many(self, keys: list[str]) -> list[str | None]:
        """Values for several keys, in order."""

    async def set(self, key: str, value: str, ttl_seconds: float | None = None) -> None:
        """Store a value, expiring after `ttl_seconds` when given."""

    async def delete(self, *keys: str) -> int:
        """Remove keys; returns how many existed."""

    async def exists(self, key: str) -> bool:
        """Whether the key holds a live value."""

    async def incr(self, key: str, ttl_seconds: float, amount: int = 1) -> tuple[int, float]:
        """Add `amount` (one by default); a new counter expires after `ttl_seconds`. Returns (count, seconds left)."""

    async def ttl(self, key: str) -> float:
        """Seconds until the key expires; 0 when missing, -1 when it never expires."""

    async def set_add(self, key: str, member: str, ttl_seconds: float | None = None) -> None:
        """Add to a set, (re)setting the set's expiry when given."""

    async def set_remove(self, key: str, member: str) -> None:
        """Remove from a set."""

    async def set_members(self, key: str) -> builtins.set[str]:
        """Members of a set (empty when missing)."""

    async def set_contains(self, key: str, member: str) -> bool:
        """Whether `member` is in the set."""

    async def compare_and_set(
        self, key: str, expected: str | None, new: str | None, ttl_seconds: float | None = None
    ) -> bool:
        """Atomically replace the value if it still equals `expected` (None: missing).
        `new` None deletes. Returns whether the swap happened."""

    async def ping(self) -> None:
        """Raise if the store cannot be reached."""

    async def close(self) -> None:
        """Release connections."""
