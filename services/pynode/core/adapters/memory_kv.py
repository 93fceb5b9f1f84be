"""In-process KeyValueStore: the embedded default (`memory://`) and the tests' fake.

Every method runs without awaiting in between, so on one event loop each is
atomic, which is what compare_and_set and incr promise. Every change of a key
ends in `_changed(key)`, which `sqlite_kv.py` uses to keep a copy on disk.
"""

from __future__ import annotations

import builtins
import time
from typing import Any


class MemoryKeyValueStore:
    """Expiring keys in dicts; expired entries are dropped lazily and by a periodic sweep."""

    _SWEEP_EVERY = 1024

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self._data: dict[str, tuple[Any, float | None]] = {}
        self._writes = 0

    def _live(self, key: str) -> Any:
        entry = self._data.get(self._prefix + key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= time.monotonic():
            del self._data[self._prefix + key]
            return None
        return value

    def _put(self, key: str, value: Any, ttl_seconds: float | None) -> None:
        expires = time.monotonic() + ttl_seconds if ttl_seconds is not None else None
        self._data[self._prefix + key] = (value, expires)
        self._changed(self._prefix + key)
        self._writes += 1
        if self._writes % self._SWEEP_EVERY == 0:
            now = time.monotonic()
            for k in [k for k, (_, e) in self._data.items() if e is not None and e <= now]:
                del self._data[k]

    def _changed(self, full_key: str) -> None:
        """After every change of `full_key` (prefixed): nothing to do in memory."""

    async def get(self, key: str) -> str | None:
        value = self._live(key)
        return value if isinstance(value, str) else None

    async def get_many(self, keys: list[str]) -> list[str | None]:
        return [await self.get(k) for k in keys]

    async def set(self, key: str, value: str, ttl_seconds: float | None = None) -> None:
        self._put(key, value, ttl_seconds)

    async def delete(self, *keys: str) -> int:
        found = 0
        for key in keys:
            if self._live(key) is not None:
                found += 1
            if self._data.pop(self._prefix + key, None) is not None:
                self._changed(self._prefix + key)
        return found

    async def exists(self, key: str) -> bool:
        return self._live(key) is not None

    async def incr(self, key: str, ttl_seconds: float, amount: int = 1) -> tuple[int, float]:
        value = self._live(key)
        if value is None:
            self._put(key, str(amount), ttl_seconds)
            return amount, ttl_seconds
        count = int(value) + amount
        expires = self._data[self._prefix + key][1]
        self._data[self._prefix + key] = (str(count), expires)  # a string, as Redis would return it
        self._changed(self._prefix + key)
        return count, (expires - time.monotonic()) if expires is not None else -1.0

    async def ttl(self, key: str) -> float:
        if self._live(key) is None:
            return 0.0
        expires = self._data[self._prefix + key][1]
        return -1.0 if expires is None else max(0.0, expires - time.monotonic())

    async def set_add(self, key: str, member: str, ttl_seconds: float | None = None) -> None:
        members = self._live(key)
        if not isinstance(members, builtins.set):
            members = builtins.set()
        members.add(member)
        if ttl_seconds is None and self._prefix + key in self._data:
            ttl_seconds = await self.ttl(key)
            ttl_seconds = None if ttl_seconds < 0 else ttl_seconds
        self._put(key, members, ttl_seconds)

    async def set_remove(self, key: str, member: str) -> None:
        members = self._live(key)
        if isinstance(members, builtins.set):
            members.discard(member)
            self._changed(self._prefix + key)

    async def set_members(self, key: str) -> builtins.set[str]:
        members = self._live(key)
        return builtins.set(members) if isinstance(members, builtins.set) else builtins.set()

    async def set_contains(self, key: str, member: str) -> bool:
        members = self._live(key)
        return isinstance(members, builtins.set) and member in members

    async def compare_and_set(
        self, key: str, expected: str | None, new: str | None, ttl_seconds: float | None = None
    ) -> bool:
        if await self.get(key) != expected:
            return False
        if new is None:
            self._data.pop(self._prefix + key, None)
            self._changed(self._prefix + key)
        else:
            self._put(key, new, ttl_seconds)
        return True

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._data.clear()
