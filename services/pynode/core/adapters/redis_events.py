"""EventFeed on Redis pub/sub, with the liveness that cache invalidation needs.

One background task owns one pub/sub connection for every channel of this
process. It pings every HEARTBEAT_SECONDS; a subscription is `live` only while
its channel is confirmed and Redis was heard from within LIVE_SECONDS, so a
silently dead connection stops consumers from trusting their caches within that
bound. On reconnection each channel's consumers are reset before they are live
again, since messages published in between are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from pynode.core.adapters.redis_kv import unavailable_on_outage
from pynode.core.events import Deliver, Reset
from pynode.core.tasks import TaskSet

log = logging.getLogger("pynode.events")

HEARTBEAT_SECONDS = 0.5
LIVE_SECONDS = 1.5  # heard nothing for this long: consumers stop trusting what they cached
DEAD_SECONDS = 5.0  # heard nothing for this long: drop the connection and make a new one
MAX_BACKOFF_SECONDS = 2.0


class RedisSubscription:
    """One consumer of one channel; `live` is read on every cache lookup, so it is cheap."""

    def __init__(self, feed: RedisEventFeed, channel: str, deliver: Deliver, reset: Reset) -> None:
        self._feed = feed
        self.channel = channel
        self.deliver = deliver
        self.reset = reset

    @property
    def live(self) -> bool:
        return self._feed.is_live(self.channel)

    def cancel(self) -> None:
        self._feed.unsubscribe(self)


class RedisEventFeed:
    """The production EventFeed; channel names carry the configured key prefix."""

    def __init__(self, url: str, prefix: str = "devpynode:") -> None:
        # No silent retries: a reconnection must be seen here, because it means lost messages.
        self._client: Any = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
            client_name="devpynode-events",
        )
        self._prefix = prefix
        self._subscribers: dict[str, list[RedisSubscription]] = {}  # by prefixed channel
        self._confirmed: set[str] = set()
        self._heard = 0.0
        self._backoff = 0.1
        self._reader = TaskSet("redis-event-feed")  # the one reader, started by the first subscription
        self._closing = False

    @unavailable_on_outage
    async def publish(self, channel: str, message: str) -> None:
        await self._client.publish(self._prefix + channel, message)

    def subscribe(self, channel: str, deliver: Deliver, reset: Reset) -> RedisSubscription:
        subscription = RedisSubscription(self, self._prefix + channel, deliver, reset)
        self._subscribers.setdefault(subscription.channel, []).append(subscription)
        if not self._closing:
            self._reader.once("reader", self._run)
        return subscription

    def unsubscribe(self, subscription: RedisSubscription) -> None:
        subscribers = self._subscribers.get(subscription.channel, [])
        if subscription in subscribers:
            subscribers.remove(subscription)

    def is_live(self, channel: str) -> bool:
        return channel in self._confirmed and time.monotonic() - self._heard < LIVE_SECONDS

    async def close(self) -> None:
        # `_closing` first: a cancellation that lands as redis-py's own read timeout expires is turned into
        # that timeout (asyncio.timeout's race) and lost; the reader then ends by itself at its next turn.
        self._closing = True
        await self._reader.close(grace=0)
        await self._client.aclose()

    async def _run(self) -> None:
        while not self._closing:
            pubsub = self._client.pubsub()
            try:
                await self._listen(pubsub)
            except (redis.RedisError, OSError) as exc:
                if not self._closing:  # closing the client ends the read with ConnectionError: not a loss
                    log.warning("event feed lost Redis (%s); reconnecting", type(exc).__name__)
            except Exception:
                # A consumer's bug must not end the feed: its subscribers would never be live again.
                log.exception("event feed failed; reconnecting")
            finally:
                self._lost()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            if self._closing:
                return
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)

    async def _listen(self, pubsub: Any) -> None:
        subscribed: set[str] = set()
        last_ping = 0.0
        self._heard = time.monotonic()
        while not self._closing:
            missing = set(self._subscribers) - subscribed
            if missing:
                await pubsub.subscribe(*missing)
                subscribed |= missing
            now = time.monotonic()
            if now - self._heard > DEAD_SECONDS:
                raise redis.ConnectionError("no answer to heartbeats")
            if now - last_ping >= HEARTBEAT_SECONDS:
                await pubsub.ping()
                last_ping = now
            message = await pubsub.get_message(timeout=HEARTBEAT_SECONDS)
            if message is not None:
                self._heard = time.monotonic()
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], message["channel"]
        if kind == "message":
            for subscription in list(self._subscribers.get(channel, ())):
                subscription.deliver(message["data"])
        elif kind == "subscribe":
            # Confirmed: from here on nothing is missed, so what was cached before must go.
            for subscription in list(self._subscribers.get(channel, ())):
                subscription.reset()
            self._confirmed.add(channel)
            self._backoff = 0.1

    def _lost(self) -> None:
        self._confirmed.clear()
        for subscribers in list(self._subscribers.values()):
            for subscription in list(subscribers):
                subscription.reset()
