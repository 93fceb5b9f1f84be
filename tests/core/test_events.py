"""The EventFeed contract on the in-process feed and on Redis pub/sub, including a lost connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from pynode.app.bootstrap import build_feed
from pynode.core.events import EventFeed
from tests.backends import Backend, unique
from tests.client import eventually
from tests.conftest import make_settings


@pytest.fixture
async def feed(backend: Backend, tmp_path: Path) -> AsyncIterator[EventFeed]:
    feed = build_feed(make_settings(backend, tmp_path).stores)
    yield feed
    await feed.close()


async def test_messages_reach_every_subscriber_of_their_channel(feed: EventFeed) -> None:
    channel, other = unique("c"), unique("o")
    got: list[str] = []
    seen_elsewhere: list[str] = []
    first = feed.subscribe(channel, got.append, lambda: None)
    second = feed.subscribe(channel, got.append, lambda: None)
    feed.subscribe(other, seen_elsewhere.append, lambda: None)
    await eventually(lambda: first.live and second.live)
    await feed.publish(channel, "hello")
    await eventually(lambda: len(got) == 2)
    assert got == ["hello", "hello"] and seen_elsewhere == []
    second.cancel()
    await feed.publish(channel, "again")
    await eventually(lambda: len(got) == 3)
    await asyncio.sleep(0.05)
    assert got == ["hello", "hello", "again"]


async def test_a_lost_connection_resets_its_subscribers_before_they_are_live_again(
    real_backend: Backend, tmp_path: Path
) -> None:
    feed = build_feed(make_settings(real_backend, tmp_path).stores)
    channel = unique("c")
    got: list[str] = []
    resets: list[bool] = []
    subscription = feed.subscribe(channel, got.append, lambda: resets.append(subscription.live))
    try:
        await eventually(lambda: subscription.live)
        confirmed = len(resets)
        admin = redis.Redis.from_url(real_backend.redis_url)
        try:
            await admin.client_kill_filter(_type="pubsub")
        finally:
            await admin.aclose()
        await eventually(lambda: not subscription.live)
        # Messages sent now are lost; the subscriber hears of it by a reset before it is live again.
        await eventually(lambda: subscription.live, seconds=10)
        assert len(resets) > confirmed and resets[-1] is False
        await feed.publish(channel, "after")
        await eventually(lambda: got == ["after"])
    finally:
        await feed.close()


async def test_publishing_without_redis_is_unavailable_not_internal(tmp_path: Path) -> None:
    from pynode.core.errors import Unavailable

    dead = Backend("dead", "", "redis://127.0.0.1:1/0", "t:")
    feed = build_feed(make_settings(dead, tmp_path).stores)
    subscription = feed.subscribe("c", lambda _m: None, lambda: None)
    try:
        with pytest.raises(Unavailable):
            await feed.publish("c", "x")
        await asyncio.sleep(0.2)
        assert not subscription.live
    finally:
        await feed.close()
