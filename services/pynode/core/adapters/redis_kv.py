"""KeyValueStore on Redis through redis.asyncio; every key carries the configured prefix."""

from __future__ import annotations

import builtins
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pynode.core.errors import unavailable_on

# KEYS[1] key; ARGV[1] expected ("" with ARGV[4]=="1" meaning missing), ARGV[2] new, ARGV[3] ttl ms,
# ARGV[4] expect-missing flag, ARGV[5] delete flag.
_CAS = """
local current = redis.call('GET', KEYS[1])
if ARGV[4] == '1' then
  if current then return 0 end
elseif current ~= ARGV[1] then
  return 0
end
if ARGV[5] == '1' then
  redis.call('DEL', KEYS[1])
elseif tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
"""


# Every Redis call: an outage is UNAVAILABLE with a retry delay, never INTERNAL.
unavailable_on_outage = unavailable_on(RedisConnectionError, RedisTimeoutError, what="the session store")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisKeyValueStore:
    """The production KeyValueStore."""

    def __init__(self, url: str, prefix: str = "devpynode:") -> None:
        # Bounded waits: a stuck Redis must fail calls, not hang them.
        self._client: Any = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
        )
        self._prefix = prefix
        self._cas = self._client.register_script(_CAS)

    def _k(self, key: str) -> str:
        return self._prefix + key

    @unavailable_on_outage
    async def get(self, key: str) -> str | None:
        value = await self._client.get(self._k(key))
        return None if value is None else str(value)

    @unavailable_on_outage
    async def get_many(self, keys: list[str]) -> list[str | None]:
        if not keys:
            return []
        values = await self._client.mget([self._k(k) for k in keys])
        return [None if v is None else str(v) for v in values]

    @unavailable_on_outage
    async def set(self, key: str, value: str, ttl_seconds: float | None = None) -> None:
        await self._client.set(self._k(key), value, px=_ms(ttl_seconds) if ttl_seconds is not None else None)

    @unavailable_on_outage
    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return int(await self._client.delete(*[self._k(k) for k in keys]))

    @unavailable_on_outage
    async def exists(self, key: str) -> bool:
        return bool(await self._client.exists(self._k(key)))

    @unavailable_on_outage
    async def incr(self, key: str, ttl_seconds: float, amount: int = 1) -> tuple[int, float]:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.incrby(self._k(key), amount)
            pipe.pexpire(self._k(key), _ms(ttl_seconds), nx=True)
            pipe.pttl(self._k(key))
            count, _, pttl = await pipe.execute()
        return int(count), (pttl / 1000 if pttl >= 0 else -1.0)

    @unavailable_on_outage
    async def ttl(self, key: str) -> float:
        pttl = int(await self._client.pttl(self._k(key)))
        if pttl == -2:
            return 0.0
        return -1.0 if pttl == -1 else pttl / 1000

    @unavailable_on_outage
    async def set_add(self, key: str, member: str, ttl_seconds: float | None = None) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.sadd(self._k(key), member)
            if ttl_seconds is not None:
                pipe.pexpire(self._k(key), _ms(ttl_seconds))
            await pipe.execute()

    @unavailable_on_outage
    async def set_remove(self, key: str, member: str) -> None:
        await self._client.srem(self._k(key), member)

    @unavailable_on_outage
    async def set_members(self, key: str) -> builtins.set[str]:
        return {str(m) for m in await self._client.smembers(self._k(key))}

    @unavailable_on_outage
    async def set_contains(self, key: str, member: str) -> bool:
        return bool(await self._client.sismember(self._k(key), member))

    @unavailable_on_outage
    async def compare_and_set(
        self, key: str, expected: str | None, new: str | None, ttl_seconds: float | None = None
    ) -> bool:
        args: list[str | int] = [
            expected or "",
            new or "",
            _ms(ttl_seconds) if ttl_seconds is not None else 0,
            "1" if expected is None else "0",
            "1" if new is None else "0",
        ]
        return bool(await self._cas(keys=[self._k(key)], args=args))

    @unavailable_on_outage
    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()
