"""The chat service's metrics: answers by how they ended, answers being written and live subscribers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily


class LiveCounts:
    """Read when /metrics is scraped: answers this process is writing, and StreamEvents subscribers."""

    def __init__(self, read: Callable[[], tuple[int, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        writing, subscribers = self._read()
        yield GaugeMetricFamily(
            "devpynode_chat_generations_running", "AI answers this process is writing now.", value=writing
        )
        yield GaugeMetricFamily(
            "devpynode_chat_subscribers", "StreamEvents subscriptions open on this process.", value=subscribers
        )


class ChatMetrics:
    """The collectors, registered by the server on its own registry."""

    def __init__(self, read: Callable[[], tuple[int, int]]) -> None:
        self.answers = Counter(
            "devpynode_chat_answers",
            "AI answers by how they ended (complete, cancelled, failed).",
            ("state",),
            registry=None,
        )
        self.live = LiveCounts(read)

    @property
    def collectors(self) -> list[Any]:
        return [self.answers, self.live]
