"""The event-feed port: short messages broadcast to every process that shares one store.

Its first use is cache invalidation: a process that ends a session tells the
others, which then stop trusting what they remembered about it. Pub/sub loses
messages while a subscriber is disconnected, so a subscription also says whether
it is `live`, and calls `reset` whenever messages may have been missed: a
consumer drops everything it cached on `reset` and caches nothing while the
subscription is not live.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Deliver = Callable[[str], None]
Reset = Callable[[], None]


class Subscription(Protocol):
    """One consumer's interest in one channel."""

    @property
    def live(self) -> bool:
        """Whether every message published now will reach this subscriber."""

    def cancel(self) -> None:
        """Stop delivering."""


class EventFeed(Protocol):
    """Fire-and-forget broadcast between processes (Redis pub/sub, or in-process when embedded)."""

    async def publish(self, channel: str, message: str) -> None:
        """Send to every live subscriber of `channel`, this process's included."""

    def subscribe(self, channel: str, deliver: Deliver, reset: Reset) -> Subscription:
        """Call `deliver` for each message on `channel`; call `reset` when messages may have been missed.
        Must be called with an event loop running."""

    async def close(self) -> None:
        """Stop every subscription and release connections."""
