"""Distributed traces: OpenTelemetry spans for every RPC, peer call, provider request, database, Redis and S3
call, exported over OTLP when an endpoint is configured.

Configured only by the standard OpenTelemetry variables, never renamed: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns tracing on, `OTEL_EXPORTER_OTLP_PROTOCOL` picks `grpc` or
`http/protobuf` (the default, as the specification says), `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` sample
(parent-based, always on unless told), `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the process,
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off. `OTEL_TRACES_EXPORTER=console` prints spans.

When none is set, nothing here imports OpenTelemetry and the edge's cost is one `is None` test per call: the
SDK is imported only by `configure`, and every hook below returns at once while `tracer()` is None.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

_provider: TracerProvider | None = None
_tracer: Tracer | None = None
_spans: EdgeSpans | None = None
_edge: Any = None  # core.edge_spans, once configured
_peers: Any = None  # core.peer_spans.PeerSpans, once configured

# gRPC codes that mark a server span as failed (OpenTelemetry's semantic conventions for RPC servers: the
# others, NOT_FOUND or PERMISSION_DENIED say, are the caller's mistake and leave the span unset).
SERVER_ERRORS = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"})
CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
RESPONSE_HEADER = "traceresponse"  # W3C Trace Context Level 2: the server's span, for the user to quote


class TracingUnavailable(RuntimeError):
    """Traces were asked for, but the OpenTelemetry packages (the `tracing` extra) are not installed."""


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces (an OTLP endpoint or the console exporter, and not disabled)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter == "none":
        return False
    if exporter == "console":
        return True
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def protocol(env: Mapping[str, str]) -> str:
    """The OTLP protocol the variables name (`grpc`, `http/protobuf`), empty when they name none."""
    return (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "").strip()


def _exporter(env: Mapping[str, str]) -> Any:
    from pynode.core import span_export

    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        return span_export.ConsoleBytes()
    # Endpoint, headers, timeout, compression and TLS come from the standard variables, read by the SDK's own.
    return span_export.bytes_exporter(protocol(env) or "http/protobuf")


def configure(service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Set up the process's tracer from the standard variables; False (and nothing imported) when they ask
    for none. Call once, before the platform is built (its engines and clients are instrumented as made)."""
    global _edge, _peers, _provider, _spans, _tracer
    env = os.environ if environ is None else environ
    if _tracer is not None or not wanted(env):
        return _tracer is not None
    try:
        from opentelemetry import trace
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        from pynode.core import edge_spans, peer_spans, span_export
    except ImportError as missing:
        raise TracingUnavailable(
            f"traces were asked for (OTEL_* variables) but OpenTelemetry is not installed ({missing.name}): "
            "pip install 'devpynode[tracing]'"
        ) from None

    # OTEL_SERVICE_NAME wins over ours (Resource.create lets attributes passed here override the variables).
    resource = Resource.create({} if env.get("OTEL_SERVICE_NAME") else {"service.name": service_name})
    provider = TracerProvider(resource=resource, id_generator=edge_spans.EdgeAwareIds())
    sampler = provider.sampler  # from OTEL_TRACES_SAMPLER(_ARG), parent-based always-on unless told
    provider.sampler = edge_spans.EdgeAwareSampler(sampler)  # before any tracer is made: they copy it
    # One recorder for the edge's spans and the SDK's (its span processor), one OTLP request per batch.
    recorder = span_export.SpanRecorder(_exporter(env), resource.attributes, ("pynode", ""), edge_spans.encode)
    provider.add_span_processor(recorder)
    trace.set_tracer_provider(provider)
    decider = edge_spans.Decider(env.get("OTEL_TRACES_SAMPLER", ""), env.get("OTEL_TRACES_SAMPLER_ARG", ""), sampler)
    _edge, _provider, _tracer = edge_spans, provider, provider.get_tracer("pynode")
    _spans = edge_spans.EdgeSpans(recorder, decider)
    _peers = peer_spans.PeerSpans(recorder, decider)
    # Provider HTTP calls (with traceparent injected) and Redis commands: both libraries patch their classes,
    # so clients made before this call are traced too.
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    return True


def destination(environ: Mapping[str, str] | None = None) -> str:
    """Where spans go, for the start-up line."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        return "the console"
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    return f"{endpoint} (OTLP {protocol(env) or 'http/protobuf'})"


def shutdown() -> None:
    """Export what is buffered and stop (the server calls it last)."""
    global _peers, _provider, _spans, _tracer
    if _provider is not None:
        _provider.shutdown()
    _peers, _provider, _spans, _tracer = None, None, None, None


def tracer() -> Tracer | None:
    """The process's tracer, or None when tracing is off (every hook checks this first)."""
    return _tracer


def instrument_engine(engine: Any) -> None:
    """Trace a SQLAlchemy engine's statements (async engines through their sync core). The instrumentor's
    `instrument(engine=...)` works once per process (it is a singleton), so each engine gets its own tracer."""
    if _tracer is None:
        return
    from opentelemetry import metrics
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    in_use = metrics.get_meter("pynode.db").create_up_down_counter("db.client.connections.usage")
    EngineTracer(_tracer, getattr(engine, "sync_engine", engine), in_use)  # type: ignore[no-untyped-call]


def client_interceptors() -> list[Any]:
    """Interceptors for an outbound grpc.aio channel: a client span per call and `traceparent` sent along."""
    return [] if _peers is None else _peers.interceptors()


class EdgeCall(Protocol):
    """What the edge holds for one call: its recorded server span, or the trace id of a call sampled out."""

    def identify(self, subject: str) -> None:
        """The authenticated caller (`enduser.id`)."""

    def trace_hex(self) -> str:
        """The trace id for logs, empty for a call that records nothing."""

    def quoted(self) -> tuple[str, str] | None:
        """`traceresponse: 00-<trace id>-<span id>-01`, what a user quotes to find the call (None when
        sampled out: there is nothing to find)."""

    def close(self, code: str, message: str) -> None:
        """The call ended with gRPC `code` (a name) and the client-facing `message`."""


class EdgeSpans(Protocol):
    """Starts the edge's calls (core.edge_spans when tracing is on)."""

    def start(self, full_method: str, metadata: Mapping[str, Any], peer: str, request_id: str) -> EdgeCall: ...


def server_spans() -> EdgeSpans | None:
    """The edge's span starter, or None when tracing is off."""
    return _spans


def current_ids() -> tuple[str, str]:
    """(trace id, span id) of the span running now, or empty strings (also when tracing is off)."""
    if _tracer is None:
        return "", ""
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return "", ""
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


@contextlib.contextmanager
def span(name: str, *, kind: str = "internal", **attributes: Any) -> Iterator[None]:
    """A span around a block (S3 and clamd calls, background jobs); nothing when tracing is off. Exceptions
    are recorded and mark it failed, then propagate."""
    if _tracer is None:
        yield
        return
    from opentelemetry.trace import SpanKind

    kinds = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT, "consumer": SpanKind.CONSUMER}
    with _tracer.start_as_current_span(name, kind=kinds[kind], attributes=attributes or None):
        yield


@contextlib.contextmanager
def detached(name: str, **attributes: Any) -> Iterator[None]:
    """A span that starts a trace of its own, whatever context the task inherited (a flush loop that the
    first request happened to start must not hang every later flush under that request, nor be dropped
    because that request was sampled out)."""
    if _tracer is None:
        yield
        return
    from opentelemetry import context

    token = _edge.unsampled.set(0)
    try:
        with _tracer.start_as_current_span(name, context=context.Context(), attributes=attributes or None):
            yield
    finally:
        _edge.unsampled.reset(token)


def current_context() -> Any:
    """The tracing context running now (None when tracing is off), for work handed to another task: the
    current span, and the trace id of a sampled-out call (whose later work must stay unrecorded)."""
    if _tracer is None:
        return None
    from opentelemetry import context

    return context.get_current(), _edge.unsampled.get()


@contextlib.contextmanager
def job(name: str, parent: Any, **attributes: Any) -> Iterator[None]:
    """The span of work that outlives its request (a chat answer written after its sender left): a child of
    the request's span, so the answer's model call is in the message's trace, though it may end later."""
    if _tracer is None or parent is None:
        yield
        return
    ctx, unsampled = parent
    token = _edge.unsampled.set(unsampled)
    try:
        with _tracer.start_as_current_span(name, context=ctx, attributes=attributes or None):
            yield
    finally:
        _edge.unsampled.reset(token)
