"""In-process EventFeed: the embedded default, where every subscriber lives in this process.

Delivery is synchronous, inside `publish`, so a change is seen by every
subscriber before the publisher's call returns.
"""

from __future__ import annotations

from pynode.core.events import Deliver, Reset


class MemorySubscription:
    """Always live: nothing stands between publisher and subscriber."""

    def __init__(self, feed: MemoryEventFeed, channel: str, deliver: Deliver) -> None:
        self._feed = feed
        self.channel = channel
        self.deliver = deliver

    @property
    def live(self) -> bool:
        return True

    def cancel(self) -> None:
        subscribers = self._feed.subscribers.get(self.channel, [])
        if self in subscribers:
            subscribers.remove(self)


class MemoryEventFeed:
    """Channels as lists of callbacks."""

    def __init__(self) -> None:
        self.subscribers: dict[str, list[MemorySubscription]] = {}

    async def publish(self, channel: str, message: str) -> None:
        for subscription in list(self.subscribers.get(channel, ())):
            subscription.deliver(message)

    def subscribe(self, channel: str, deliver: Deliver, reset: Reset) -> MemorySubscription:
        subscription = MemorySubscription(self, channel, deliver)
        self.subscribers.setdefault(channel, []).append(subscription)
        return subscription

    async def close(self) -> None:
        self.subscribers.clear()
