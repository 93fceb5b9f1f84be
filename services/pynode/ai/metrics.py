"""The AI router's metrics, per provider and model: time to first token, tokens per second, generations by
how they ended, queue depth and cache hits. Updated once per generation (never per token)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

_TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_RATE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000)


class QueueDepth:
    """Generations waiting per deployment, read from the gates when /metrics is scraped."""

    def __init__(self, read: Callable[[], list[tuple[str, int, int]]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        waiting = GaugeMetricFamily(
            "devpynode_ai_queue_depth", "Generations waiting for a deployment's slot.", labels=["provider", "model"]
        )
        running = GaugeMetricFamily(
            "devpynode_ai_generations_running", "Generations running per deployment.", labels=["provider", "model"]
        )
        for deployment, queued, active in self._read():
            provider, _, model = deployment.partition("/")
            waiting.add_metric([provider, model], queued)
            running.add_metric([provider, model], active)
        yield waiting
        yield running


class AIMetrics:
    """The collectors, registered by the server on its own registry."""

    def __init__(self, gates: Callable[[], list[tuple[str, int, int]]]) -> None:
        labels = ("provider", "model")
        self.ttft = Histogram(
            "devpynode_ai_time_to_first_token_seconds",
            "From the request to the first token sent.",
            labels,
            buckets=_TTFT_BUCKETS,
            registry=None,
        )
        self.rate = Histogram(
            "devpynode_ai_tokens_per_second",
            "Completion tokens per second of each generation, after its first token.",
            labels,
            buckets=_RATE_BUCKETS,
            registry=None,
        )
        self.generations = Counter(
            "devpynode_ai_generations", "Generations by how they ended.", (*labels, "finish_reason"), registry=None
        )
        self.tokens = Counter("devpynode_ai_completion_tokens", "Completion tokens generated.", labels, registry=None)
        self.cache = Counter(
            "devpynode_ai_cache_lookups",
            "Response cache lookups, by the deployment that answered (a miss no model answered is not counted).",
            ("provider", "model", "result"),
            registry=None,
        )
        self.queue = QueueDepth(gates)

    @property
    def collectors(self) -> list[Any]:
        return [self.ttft, self.rate, self.generations, self.tokens, self.cache, self.queue]
