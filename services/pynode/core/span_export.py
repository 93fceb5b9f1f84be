"""The span recorder behind `core.tracing`: the edge's own spans as plain tuples, written as OTLP protobuf by
hand in a background thread, in the same requests as the SDK's spans (database, Redis, HTTP, peer calls).

Why not the SDK's `BatchSpanProcessor` for everything: per server span, the SDK's span object, its attribute
bookkeeping and the OTLP encoder (`encode_spans`, a Python dict-and-message walk) cost a cheap RPC about half
its throughput (issue 24's bench, py-spy). An edge span here is a tuple appended to a list; the bytes of its
name, kind and constant attributes are made once per method, and a batch is a concatenation of byte strings.
SDK spans still go through the SDK's encoder; protobuf lets the two halves of a request be concatenated.

The batching honours the SDK's variables (`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`,
`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`); the transport is the SDK's OTLP exporter (gRPC or HTTP, endpoint, headers,
TLS, compression, retries from the standard variables), handed bytes instead of span objects.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from pynode.core.wire import varint

log = logging.getLogger("pynode.tracing")

# OTLP field tags (field number << 3 | wire type), opentelemetry/proto/trace/v1/trace.proto.
_LEN = 2
_SPAN_FLAGS_HAS_IS_REMOTE, _SPAN_FLAGS_IS_REMOTE = 0x100, 0x200
_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")

# One finished edge span as the edge left it (raw values: encoding waits for the export thread), and one ready
# for `encode_edge_span`: (trace id, span id, parent span id or b"", parent is remote, trace state, the method's
# pre-encoded bytes, start ns, end ns, the call's own attributes (pre-encoded), status code (0 unset, 2 error),
# status message).
EdgeRecord = tuple[Any, ...]
EncodedFields = tuple[bytes, bytes, bytes, bool, str, bytes, int, int, bytes, int, str]


def field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (`tag` already shifted, wire type 2)."""
    return varint(tag) + varint(len(payload)) + payload


def _any_value(value: Any) -> bytes:
    # AnyValue: 1 string, 2 bool, 3 int64, 4 double (opentelemetry/proto/common/v1/common.proto).
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)
    if isinstance(value, str):
        return field(0x0A, value.encode())
    if isinstance(value, Sequence):  # array_value (5): ArrayValue{1 repeated AnyValue}
        return field(0x2A, b"".join(field(0x0A, _any_value(item)) for item in value))
    return field(0x0A, str(value).encode())


def attribute(key: str, value: Any) -> bytes:
    """One KeyValue as a Span's attributes field (9)."""
    return field(0x4A, field(0x0A, key.encode()) + field(0x12, _any_value(value)))


def string_attribute(key: bytes, value: str) -> bytes:
    """The common case, written out: `key` pre-encoded as KeyValue's key field."""
    raw = value.encode()
    any_value = b"\x0a" + varint(len(raw)) + raw
    kv = key + b"\x12" + varint(len(any_value)) + any_value
    return b"\x4a" + varint(len(kv)) + kv


def attribute_key(key: str) -> bytes:
    return field(0x0A, key.encode())


def method_bytes(name: str, kind: int, attributes: Mapping[str, Any]) -> bytes:
    """What every span of one method shares: its name (5), kind (6) and constant attributes (9)."""
    constant = b"".join(attribute(key, value) for key, value in attributes.items())
    return field(0x2A, name.encode()) + b"\x30" + varint(kind) + constant


def encode_edge_span(record: EncodedFields) -> bytes:
    trace_id, span_id, parent_id, remote, trace_state, shared, start, end, own, code, message = record
    flags = _SPAN_FLAGS_HAS_IS_REMOTE | (_SPAN_FLAGS_IS_REMOTE if remote else 0)
    body = b"\x0a\x10" + trace_id + b"\x12\x08" + span_id
    if trace_state:
        body += field(0x1A, trace_state.encode())
    if parent_id:
        body += b"\x22\x08" + parent_id
    body += shared + b"\x39" + _FIXED64.pack(start) + b"\x41" + _FIXED64.pack(end) + own
    if code:
        status = (field(0x12, message.encode()) if message else b"") + b"\x18" + varint(code)
        body += field(0x7A, status)
    body += b"\x85\x01" + _FIXED32.pack(flags)
    return b"\x12" + varint(len(body)) + body  # ScopeSpans.spans (2)


def resource_bytes(attributes: Mapping[str, Any]) -> bytes:
    """ResourceSpans.resource (1): the process's resource, written once."""
    kvs = b"".join(field(0x0A, field(0x0A, k.encode()) + field(0x12, _any_value(v))) for k, v in attributes.items())
    return field(0x0A, kvs)


def scope_bytes(name: str, version: str) -> bytes:
    """ScopeSpans.scope (1)."""
    return field(0x0A, field(0x0A, name.encode()) + (field(0x12, version.encode()) if version else b""))


def request_bytes(resource: bytes, scope: bytes, spans: Sequence[bytes]) -> bytes:
    """An ExportTraceServiceRequest with one ResourceSpans of one ScopeSpans holding `spans`."""
    scope_spans = field(0x12, scope + b"".join(spans))
    return field(0x0A, resource + scope_spans)


class Batch:
    """What one export sends: the edge's spans already as bytes, and the SDK's spans still as objects."""

    __slots__ = ("edge", "encode", "resource", "scope", "sdk")

    def __init__(
        self, resource: bytes, scope: bytes, edge: list[EdgeRecord], sdk: list[Any], encode: Callable[..., bytes]
    ) -> None:
        self.resource, self.scope, self.edge, self.sdk, self.encode = resource, scope, edge, sdk, encode

    def __len__(self) -> int:
        return len(self.edge) + len(self.sdk)

    def payload(self) -> bytes:
        data = b""
        if self.sdk:
            from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

            data = encode_spans(self.sdk).SerializeToString()
        if self.edge:
            # Repeated fields of concatenated messages concatenate: one request, both halves.
            data += request_bytes(self.resource, self.scope, [self.encode(r) for r in self.edge])
        return data


def bytes_exporter(protocol: str) -> Any:
    """The SDK's OTLP exporter for `protocol`, taught to send a `Batch` (configured by the standard
    variables, as the SDK's own would be)."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        class GrpcBytes(Grpc):
            def _initialize_channel_and_stub(self) -> None:
                super()._initialize_channel_and_stub()  # type: ignore[no-untyped-call]  # also on reconnecting
                # The request is sent as the bytes it already is (the SDK's stub would parse them back first).
                self._client = _RawTraceService(self._channel, ExportTraceServiceResponse.FromString)  # type: ignore[assignment]

            def _translate_data(self, data: Any) -> Any:
                return data.payload()

            def _count_data(self, data: Any) -> int:
                return len(data)

        return GrpcBytes()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http
    from opentelemetry.sdk.trace.export import SpanExportResult

    class HttpBytes(Http):
        def export(self, spans: Any) -> SpanExportResult:
            if self._shutdown:
                return SpanExportResult.FAILURE
            sent = self._client.export(spans.payload())
            return SpanExportResult.SUCCESS if sent.success else SpanExportResult.FAILURE

    return HttpBytes()


class _RawTraceService:
    """The OTLP TraceService stub, taking an ExportTraceServiceRequest already serialized."""

    def __init__(self, channel: Any, parse: Callable[[bytes], Any]) -> None:
        self.Export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,  # bytes as they are
            response_deserializer=parse,
        )


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, "") or default))
    except ValueError:
        return default


class SpanRecorder(SpanProcessor):
    """Buffers finished spans (the edge's tuples and the SDK's spans, as its span processor) and exports them
    from one thread: every `OTEL_BSP_SCHEDULE_DELAY` ms, or at once when a batch's worth is waiting. Spans
    beyond `OTEL_BSP_MAX_QUEUE_SIZE` are dropped and counted, never waited for."""

    def __init__(
        self,
        exporter: Any,
        resource: Mapping[str, Any],
        scope: tuple[str, str],
        encode: Callable[[EdgeRecord], bytes],
    ) -> None:
        self._exporter = exporter
        self._encode = encode
        self._resource = resource_bytes(resource)
        self._scope = scope_bytes(*scope)
        self._delay = _env_int("OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
        self._max_queue = _env_int("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        self._batch = min(_env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512), self._max_queue)
        self._edge: list[EdgeRecord] = []
        self._sdk: list[Any] = []
        self._wake = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()  # one export at a time (the thread's, a flush's)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="span-export", daemon=True)
        self._thread.start()

    def edge(self, record: EdgeRecord) -> None:
        """Queue one edge span (from any thread; a list append is atomic)."""
        queued = len(self._edge) + len(self._sdk)
        if queued >= self._max_queue:
            self.dropped += 1
            return
        self._edge.append(record)
        if queued + 1 == self._batch:
            self._wake.set()

    # The SDK's SpanProcessor interface, for the spans its tracer makes.
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def _on_ending(self, span: Span) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        queued = len(self._edge) + len(self._sdk)
        if queued >= self._max_queue:
            self.dropped += 1
            return
        self._sdk.append(span)
        if queued + 1 == self._batch:
            self._wake.set()

    def _take(self) -> Batch | None:
        edge, sdk = self._edge[: self._batch], self._sdk[: max(0, self._batch - min(len(self._edge), self._batch))]
        if not edge and not sdk:
            return None
        # Slices then deletes (not a swap of the lists): appends from other threads in between are kept.
        del self._edge[: len(edge)]
        del self._sdk[: len(sdk)]
        return Batch(self._resource, self._scope, edge, sdk, self._encode)

    def _export_all(self) -> None:
        with self._lock:
            while (batch := self._take()) is not None:
                try:
                    self._exporter.export(batch)
                except Exception:  # an exporter's bug must not end the thread (its failures it logs itself)
                    log.exception("span export failed")

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._delay)
            self._wake.clear()
            self._export_all()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._export_all()
        return True

    def shutdown(self) -> None:
        """Export what is queued and stop the thread and the exporter."""
        self._stopping = True
        self._wake.set()
        self._thread.join(10)
        self._export_all()
        if self.dropped:
            log.warning("%d spans dropped: the export queue was full (OTEL_BSP_MAX_QUEUE_SIZE)", self.dropped)
        self._exporter.shutdown()


class ConsoleBytes:
    """`OTEL_TRACES_EXPORTER=console`: each batch printed as OTLP JSON on stdout (for looking, not parsing)."""

    def export(self, batch: Batch) -> None:
        from google.protobuf.json_format import MessageToJson
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        print(MessageToJson(ExportTraceServiceRequest.FromString(batch.payload())), flush=True)

    def shutdown(self) -> None:
        return None
