"""The KeyValueStore contract, on the in-memory adapter and on real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pynode.app.bootstrap import build_kv
from pynode.core.kv import KeyValueStore
from tests.backends import Backend, unique
from tests.conftest import make_settings


@pytest.fixture
async def kv(backend: Backend, tmp_path: object) -> AsyncIterator[KeyValueStore]:
    store = build_kv(make_settings(backend, tmp_path).stores)  # type: ignore[arg-type]
    yield store
    await store.close()


async def test_strings_expire(kv: KeyValueStore) -> None:
    await kv.set("a", "1", 0.05)
    await kv.set("b", "2")
    assert await kv.get_many(["a", "b", "c"]) == ["1", "2", None]
    assert 0 < await kv.ttl("a") <= 0.05 and await kv.ttl("b") == -1 and await kv.ttl("c") == 0
    await asyncio.sleep(0.08)
    assert await kv.get("a") is None and not await kv.exists("a")
    assert await kv.delete("a", "b") == 1


async def test_counters_keep_their_first_expiry(kv: KeyValueStore) -> None:
    key = unique("n")
    assert (await kv.incr(key, 10))[0] == 1
    count, ttl = await kv.incr(key, 1000)
    assert count == 2 and 0 < ttl <= 10
    assert await kv.get(key) == "2"


async def test_sets(kv: KeyValueStore) -> None:
    key = unique("s")
    await kv.set_add(key, "x", 10)
    await kv.set_add(key, "y")
    assert await kv.set_members(key) == {"x", "y"} and await kv.set_contains(key, "x")
    await kv.set_remove(key, "x")
    assert await kv.set_members(key) == {"y"} and not await kv.set_contains(key, "x")
    assert await kv.set_members(unique("none")) == set()


async def test_compare_and_set_is_exclusive(kv: KeyValueStore) -> None:
    key = unique("c")
    assert await kv.compare_and_set(key, None, "v1", 10)
    assert not await kv.compare_and_set(key, None, "v2", 10)
    results = await asyncio.gather(*(kv.compare_and_set(key, "v1", f"w{i}", 10) for i in range(10)))
    assert sum(results) == 1
    current = await kv.get(key)
    assert current is not None and current.startswith("w")
    assert await kv.compare_and_set(key, current, None)
    assert await kv.get(key) is None


async def test_redis_outage_is_unavailable_not_internal() -> None:
    from pynode.core.adapters.redis_kv import RedisKeyValueStore
    from pynode.core.errors import Unavailable

    store = RedisKeyValueStore("redis://127.0.0.1:1/0", "t:")
    with pytest.raises(Unavailable) as raised:
        await store.get("x")
    assert raised.value.retry_after == 1.0
    await store.close()
