"""Prometheus metrics for the gRPC server, with the standard go-grpc-prometheus names.

Each RPC's counts live in plain attributes of its MethodMetrics, bumped on the event
loop without locks (prometheus_client's metric objects take a lock per update, which
showed in a cheap RPC's throughput); a collector turns them into metric families when
/metrics is scraped, from the HTTP server's thread. Reads there may be a few calls
apart from each other, which a scrape tolerates.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LABELS = ["grpc_type", "grpc_service", "grpc_method"]


@dataclass(frozen=True)
class MethodLabels:
    """The labels that identify one RPC in every metric."""

    grpc_type: str
    grpc_service: str
    grpc_method: str


class MethodMetrics:
    """One RPC's counts: started, messages in and out, completions by code, latency buckets."""

    __slots__ = ("buckets", "handled", "labels", "received", "sent", "started", "total_seconds")

    def __init__(self, labels: MethodLabels) -> None:
        self.labels = labels
        self.started = 0
        self.received = 0
        self.sent = 0
        self.handled: dict[str, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.total_seconds = 0.0

    def finished(self, code: str, seconds: float) -> None:
        """Count a completed call and its latency."""
        self.handled[code] = self.handled.get(code, 0) + 1
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total_seconds += seconds


class _Collector(Collector):
    def __init__(self, methods: list[MethodMetrics]) -> None:
        self._methods = methods

    def collect(self) -> Iterator[Metric]:
        started = CounterMetricFamily("grpc_server_started", "RPCs started on the server.", labels=_LABELS)
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure.",
            labels=[*_LABELS, "grpc_code"],
        )
        received = CounterMetricFamily(
            "grpc_server_msg_received", "Stream messages received by the server.", labels=_LABELS
        )
        sent = CounterMetricFamily("grpc_server_msg_sent", "Stream messages sent by the server.", labels=_LABELS)
        seconds = HistogramMetricFamily(
            "grpc_server_handling_seconds", "Response latency of RPCs handled by the server.", labels=_LABELS
        )
        for method in list(self._methods):
            values = [method.labels.grpc_type, method.labels.grpc_service, method.labels.grpc_method]
            started.add_metric(values, method.started)
            received.add_metric(values, method.received)
            sent.add_metric(values, method.sent)
            for code, count in list(method.handled.items()):
                handled.add_metric([*values, code], count)
            cumulative, buckets = 0, []
            for bound, count in zip([*map(str, BUCKETS), "+Inf"], list(method.buckets), strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            seconds.add_metric(values, buckets, method.total_seconds)
        yield from (started, handled, received, sent, seconds)


class _GaugeCollector(Collector):
    """A gauge read from the application when scraped (the read must be safe from another thread)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._name, self._documentation, self._read = name, documentation, read

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self._name, self._documentation, value=self._read())


class ServerMetrics:
    """The server's metrics, in a registry of their own (never the global one)."""

    def __init__(self) -> None:
        self._methods: list[MethodMetrics] = []
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self._methods))
        self._http: Any = None

    def for_method(self, labels: MethodLabels) -> MethodMetrics:
        """The counts of one RPC (created when its handler is mounted)."""
        method = MethodMetrics(labels)
        self._methods.append(method)
        return method

    def in_flight(self) -> int:
        """Calls started and not yet finished."""
        return sum(m.started - sum(m.handled.values()) for m in list(self._methods))

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Publish a value that `read` returns at scrape time."""
        self.registry.register(_GaugeCollector(name, documentation, read))

    def serve_http(self, host: str, port: int) -> int:
        """Expose /metrics over HTTP; returns the bound port."""
        from pynode.core import scrape_server

        server = scrape_server.serve(host, port, self.registry)
        self._http = server
        return int(server.server_address[1])

    def close(self) -> None:
        """Stop the /metrics endpoint."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
