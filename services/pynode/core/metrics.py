"""Prometheus metrics for the gRPC server, with the standard go-grpc-prometheus names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass(frozen=True)
class MethodLabels:
    """The labels that identify one RPC in every metric."""

    grpc_type: str
    grpc_service: str
    grpc_method: str


class MethodMetrics:
    """One RPC's metric children, resolved once (label lookups cost more than the increments)."""

    def __init__(self, metrics: ServerMetrics, labels: MethodLabels) -> None:
        values = (labels.grpc_type, labels.grpc_service, labels.grpc_method)
        self._metrics = metrics
        self._values = values
        self.started = metrics.started.labels(*values)
        self.handling_seconds = metrics.handling_seconds.labels(*values)
        self.msg_received = metrics.msg_received.labels(*values)
        self.msg_sent = metrics.msg_sent.labels(*values)
        self._handled: dict[str, Any] = {}

    def handled(self, code: str) -> Any:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = self._metrics.handled.labels(*self._values, code)
        return child


class ServerMetrics:
    """The server's counters and histograms, in a registry of their own (never the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("grpc_type", "grpc_service", "grpc_method")
        self.started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", labels, registry=self.registry
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, regardless of success or failure.",
            (*labels, "grpc_code"),
            registry=self.registry,
        )
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Response latency of RPCs handled by the server.",
            labels,
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.msg_received = Counter(
            "grpc_server_msg_received_total",
            "Stream messages received by the server.",
            labels,
            registry=self.registry,
        )
        self.msg_sent = Counter(
            "grpc_server_msg_sent_total", "Stream messages sent by the server.", labels, registry=self.registry
        )
        self._http: Any = None

    def for_method(self, labels: MethodLabels) -> MethodMetrics:
        """Pre-resolved children for one RPC."""
        return MethodMetrics(self, labels)

    def serve_http(self, host: str, port: int) -> int:
        """Expose /metrics over HTTP; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        return int(server.server_address[1])

    def close(self) -> None:
        """Stop the /metrics endpoint."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
