"""A real OpenTelemetry collector for tests, with the spans it forwards readable by the test.

The platform exports to `rotel-agent` (PyPI `rotel`, a real OTLP collector: gRPC and HTTP receivers, batching,
an OTLP exporter); the collector forwards to `SpanStore`, an OTLP/gRPC TraceService kept in the test's process,
which is the trace backend a test can query. Everything on loopback, ports chosen here.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import rotel
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Span:
    """One received span, flattened: its service, ids, name, kind, status and attributes."""

    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int  # OTLP SpanKind: 1 internal, 2 server, 3 client
    status: int  # 0 unset, 1 ok, 2 error
    status_message: str
    attributes: dict[str, Any] = field(default_factory=dict)


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which else None


class SpanStore(trace_service_pb2_grpc.TraceServiceServicer):
    """The trace backend behind the collector: every span it was sent, in arrival order."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        Span(
                            str(resource.get("service.name", "")),
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.name,
                            span.kind,
                            span.status.code,
                            span.status.message,
                            {a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        return trace_service_pb2.ExportTraceServiceResponse()

    async def start(self) -> int:
        self.server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]

    async def wait_for(self, what: str, check: Any, seconds: float = 20.0) -> Any:
        """Poll until `check()` is truthy (spans arrive in the collector's batches)."""
        deadline = time.monotonic() + seconds
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                names = sorted({f"{s.service}:{s.name}" for s in self.spans})
                raise AssertionError(f"no {what} after {seconds} s; spans seen: {names}")
            await asyncio.sleep(0.1)


@dataclass
class Collector:
    """A running rotel-agent: the OTLP endpoints the platform exports to."""

    grpc_endpoint: str
    http_endpoint: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def binary() -> Path:
    return Path(rotel.__file__).parent / "rotel-agent"


def start_collector(store_port: int, log: Path) -> Collector:
    """rotel-agent receiving OTLP on two free ports and forwarding every trace to the store at `store_port`."""
    grpc_port, http_port = _free_port(), _free_port()
    args = [
        str(binary()),
        "start",
        "--otlp-grpc-endpoint",
        f"127.0.0.1:{grpc_port}",
        "--otlp-http-endpoint",
        f"127.0.0.1:{http_port}",
        "--exporter",
        "otlp",
        "--otlp-exporter-endpoint",
        f"http://127.0.0.1:{store_port}",
        "--otlp-exporter-protocol",
        "grpc",
        "--batch-timeout",
        "100ms",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not (_listening(grpc_port) and _listening(http_port)):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"rotel-agent did not start: {log.read_text(errors='replace')[-1500:]}")
        time.sleep(0.05)
    return Collector(f"http://127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", process)


def children(spans: list[Span], parent: Span) -> Iterator[Span]:
    return (s for s in spans if s.parent_id == parent.span_id)
