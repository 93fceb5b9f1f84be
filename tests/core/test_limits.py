"""The shared limits kernel on the in-memory store and on real Redis: windows, reserved allowances, slots."""

from __future__ import annotations

import asyncio

import pytest

from pynode.core.errors import QuotaExceeded
from pynode.core.kv import KeyValueStore
from pynode.core.limits import Allowance, FixedWindow, Quota, Slots
from tests.backends import unique
from tests.core import test_kv

kv = test_kv.kv  # the same store fixture, on both backends
QUOTA = Quota("test:per_minute", "hits per minute")


async def test_a_fixed_window_refuses_past_its_limit_with_the_quota_and_a_retry_delay(kv: KeyValueStore) -> None:
    window = FixedWindow(kv)
    key = unique("w")
    for _ in range(3):
        await window.hit(key, 3, QUOTA, what="at most 3 hits per minute")
    with pytest.raises(QuotaExceeded) as refused:
        await window.hit(key, 3, QUOTA, what="at most 3 hits per minute")
    error = refused.value
    assert error.reason == "RATE_LIMITED" and 0 < error.retry_after <= 60
    assert error.message.startswith("at most 3 hits per minute; retry in ")
    assert [(v.subject, v.description) for v in error.violations] == [("test:per_minute", "hits per minute")]
    await window.hit(unique("w"), 3, QUOTA, what="another key")  # keys are independent
    for _ in range(10):
        await window.hit(key, 0, QUOTA, what="no limit")  # 0: unlimited


async def test_an_allowance_grants_what_is_left_and_never_goes_past_the_limit(kv: KeyValueStore) -> None:
    allowance = Allowance(kv)
    key = unique("a")
    first = await allowance.reserve(key, 60, 100, at_least=10, ttl_seconds=60)
    assert first.granted == 60
    second = await allowance.reserve(key, 60, 100, at_least=10, ttl_seconds=60)
    assert second.granted == 40 and await allowance.used(key) == 100  # what was left, not more
    third = await allowance.reserve(key, 5, 100, at_least=1, ttl_seconds=60)
    assert third.granted == 0 and await allowance.used(key) == 100  # refused: nothing taken
    await allowance.settle(first, 20)  # used less than reserved: the rest comes back
    assert await allowance.used(key) == 60
    await allowance.settle(first, 20)  # settling twice changes nothing
    await allowance.settle(second, 55)  # used more (the estimate was low): counted as it was
    assert await allowance.used(key) == 75


async def test_concurrent_reservations_never_overspend(kv: KeyValueStore) -> None:
    allowance = Allowance(kv)
    key = unique("c")
    granted = await asyncio.gather(*(allowance.reserve(key, 30, 100, at_least=30, ttl_seconds=60) for _ in range(10)))
    assert sum(r.granted for r in granted) <= 100 and await allowance.used(key) <= 100
    assert sum(r.granted for r in granted) == await allowance.used(key)


def test_slots_are_counted_per_owner() -> None:
    slots = Slots(2, Quota("test:slots", "held at once", "TOO_MANY"), "at most 2 at once")
    with slots.hold("a"), slots.hold("a"):
        with pytest.raises(QuotaExceeded) as refused:
            slots.take("a")
        assert refused.value.reason == "TOO_MANY" and refused.value.violations[0].subject == "test:slots"
        with slots.hold("b"):
            assert slots.held("a") == 2 and slots.held() == 3
    assert slots.held() == 0
