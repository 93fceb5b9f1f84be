"""The edge's server spans, without the SDK on the hot path: the sampling decision is taken once, from the
caller's `traceparent` and the configured sampler, before anything is made.

- Sampled: an `EdgeSpan` (an OpenTelemetry API span, so the SDK's spans of the call, database, Redis, HTTP and
  peer calls, become its children) is made current; when it ends it becomes a tuple for `SpanRecorder`.
- Sampled out: no span and no OpenTelemetry context at all; one context variable names the call's trace
  (`unsampled`), which `EdgeAwareSampler` and `EdgeAwareIds` read when the SDK is asked for a span inside it,
  so that span is dropped too and keeps the caller's trace id: peers and providers are sent `traceparent` with
  the sampled flag 0 (W3C: a sampled-out call tells its children not to start traces of their own).

Imported only by `core.tracing.configure` (it imports OpenTelemetry's API).
"""

from __future__ import annotations

import contextvars
import random
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util.types import Attributes

from pynode.core import span_export, tracing

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_EMPTY = otel_context.Context()
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)

# The trace id of the sampled-out edge call running now (0 outside one).
unsampled: contextvars.ContextVar[int] = contextvars.ContextVar("pynode_unsampled_trace", default=0)

_RATIO_LIMIT = (1 << 64) - 1


class Decider:
    """The configured sampler's verdict for a server span, from the standard variables: the six samplers the
    specification names are decided here in a few comparisons; any other (a plugin) is asked through the SDK."""

    def __init__(self, name: str, arg: str, fallback: Sampler) -> None:
        self.name = name.strip().lower() or "parentbased_always_on"
        self.parent_based = self.name.startswith("parentbased_")
        root = self.name.removeprefix("parentbased_")
        ratio = 1.0
        if root == "traceidratio":
            try:
                ratio = min(1.0, max(0.0, float(arg))) if arg.strip() else 1.0
            except ValueError:
                ratio = 1.0
        self.bound = {"always_on": _RATIO_LIMIT + 1, "always_off": 0}.get(root, round(ratio * (_RATIO_LIMIT + 1)))
        self.generic = root not in ("always_on", "always_off", "traceidratio")
        self.fallback = fallback

    def sampled(self, trace_id: int, parent: SpanContext | None, name: str) -> bool:
        if self.generic:
            ctx = trace.set_span_in_context(trace.NonRecordingSpan(parent), _EMPTY) if parent else _EMPTY
            verdict = self.fallback.should_sample(ctx, trace_id, name, SpanKind.SERVER).decision
            return verdict in (Decision.RECORD_AND_SAMPLE,)
        if parent is not None and self.parent_based:
            return bool(parent.trace_flags & TraceFlags.SAMPLED)
        return (trace_id & _RATIO_LIMIT) < self.bound


class EdgeAwareSampler(Sampler):
    """The SDK's sampler, except inside a sampled-out edge call: a span there without a parent span (the call
    has none, on purpose) is the call's child, so it is dropped."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if unsampled.get() and not trace.get_current_span(parent_context).get_span_context().is_valid:
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"EdgeAware{{{self.inner.get_description()}}}"


class EdgeAwareIds(IdGenerator):
    """Random ids, except that a root span inside a sampled-out edge call takes the call's trace id (so what it
    propagates, flag 0, names the caller's trace)."""

    def generate_span_id(self) -> int:
        return random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return unsampled.get() or random.getrandbits(128) or 1


class Method:
    """What every span of one RPC method shares, encoded once."""

    __slots__ = ("encoded", "name")

    def __init__(self, full_method: str, kind: int = 2) -> None:
        self.name = full_method.lstrip("/")
        service, _, method = self.name.partition("/")
        # OTLP span kinds: 2 server (the edge), 3 client (a peer call).
        self.encoded = span_export.method_bytes(
            self.name, kind, {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
        )


class EdgeSpan(trace.Span):
    """One RPC's recorded server span: an API span (so the SDK hangs the call's own spans under it, and logs
    find its ids), kept as plain fields and handed to the recorder as a tuple when it ends."""

    __slots__ = (
        "_context",
        "_recorder",
        "_token",
        "attributes",
        "method",
        "parent_id",
        "peer",
        "request_id",
        "span_id",
        "start",
        "subject",
        "trace",
        "trace_state",
    )

    def __init__(
        self,
        recorder: span_export.SpanRecorder,
        method: Method,
        trace_id: int,
        parent_id: int,
        trace_state: str,
        peer: str,
        request_id: str,
        base: otel_context.Context,
    ) -> None:
        self._recorder = recorder
        self.method = method
        self.trace = trace_id
        self.span_id = random.getrandbits(64) or 1
        self.parent_id = parent_id
        self.trace_state = trace_state
        self.peer = peer
        self.request_id = request_id
        self.subject = ""
        self.attributes: dict[str, Any] | None = None
        self._context: SpanContext | None = None
        self.start = time.time_ns()
        self._token = otel_context.attach(trace.set_span_in_context(self, base))

    # The API span, for the SDK and the instrumentations (rarely asked: built when first asked).
    def get_span_context(self) -> SpanContext:
        if self._context is None:
            state = TraceState.from_header([self.trace_state]) if self.trace_state else None
            self._context = SpanContext(self.trace, self.span_id, False, _SAMPLED, state)
        return self._context

    def is_recording(self) -> bool:
        return True

    def set_attribute(self, key: str, value: Any) -> None:
        if self.attributes is None:
            self.attributes = {}
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: Attributes = None, timestamp: int | None = None) -> None:
        return None  # the edge records no events (nothing on the call's path adds one)

    def update_name(self, name: str) -> None:
        return None  # named by its method, always

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        return None  # the edge sets it from the gRPC code (end)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        return None

    def end(self, end_time: int | None = None) -> None:
        return None  # ended by the edge (finish), with the call's status

    # The edge's side (tracing.EdgeCall).
    def identify(self, subject: str) -> None:
        self.subject = subject

    def trace_hex(self) -> str:
        return f"{self.trace:032x}"

    def quoted(self) -> tuple[str, str] | None:
        return tracing.RESPONSE_HEADER, f"00-{self.trace:032x}-{self.span_id:016x}-01"

    def close(self, code: str, message: str) -> None:
        """Hand the span to the recorder with the call's gRPC code, and restore the context the call began in."""
        error = None
        if code in tracing.SERVER_ERRORS:
            error = f"{code}: {message}" if message else code
        self._recorder.edge(
            (
                self.trace,
                self.span_id,
                self.parent_id,
                self.trace_state,
                self.method,
                self.start,
                time.time_ns(),
                self.peer,
                self.request_id,
                self.subject,
                tracing.CODES.get(code, 2),
                error,
                self.attributes,
            )
        )
        try:  # noqa: SIM105 (contextlib.suppress makes an object per call; this is every call's path)
            otel_context.detach(self._token)
        except ValueError:
            # A stream's generator may be finished from another context by grpc (the client went away): the
            # token is not ours to reset there, and that task ends with its context anyway.
            pass


class UnsampledCall:
    """A sampled-out call: no span, only its trace id in `unsampled` until the call ends."""

    __slots__ = ("_token",)

    def __init__(self, trace_id: int) -> None:
        self._token = unsampled.set(trace_id)

    def identify(self, subject: str) -> None:
        return None

    def trace_hex(self) -> str:
        return ""  # nothing recorded: no trace to name in logs or to the caller

    def quoted(self) -> tuple[str, str] | None:
        return None

    def close(self, code: str, message: str) -> None:
        try:  # noqa: SIM105 (as in EdgeSpan.close)
            unsampled.reset(self._token)
        except ValueError:  # finished from another context (see EdgeSpan.close)
            pass


_K_PEER = span_export.attribute_key("network.peer.address")
_K_REQUEST = span_export.attribute_key("devpynode.request_id")
_K_USER = span_export.attribute_key("enduser.id")
_STATUS_CODES = [span_export.attribute("rpc.grpc.status_code", code) for code in range(17)]


class _Repeated:
    """Encoded attributes whose values repeat from span to span (a connection's peer, a caller's id): each made
    once, forgotten all together past `limit` (only the export thread uses it)."""

    def __init__(self, key: bytes, limit: int = 4096) -> None:
        self._key, self._limit = key, limit
        self._known: dict[str, bytes] = {}

    def __call__(self, value: str) -> bytes:
        found = self._known.get(value)
        if found is None:
            if len(self._known) >= self._limit:
                self._known.clear()
            found = self._known[value] = span_export.string_attribute(self._key, value)
        return found


_peer_attribute, _user_attribute = _Repeated(_K_PEER), _Repeated(_K_USER)


def encode(record: tuple[Any, ...]) -> bytes:
    """One finished EdgeSpan as a ScopeSpans.spans field (in the export thread)."""
    trace_id, span_id, parent_id, trace_state, method, start, end, peer, request_id, user, code, error, extra = record
    own = _peer_attribute(peer) + span_export.string_attribute(_K_REQUEST, request_id) if peer else b""
    if user:
        own += _user_attribute(user)
    own += (
        _STATUS_CODES[code] if 0 <= code < len(_STATUS_CODES) else span_export.attribute("rpc.grpc.status_code", code)
    )
    if extra:
        own += b"".join(span_export.attribute(k, v) for k, v in extra.items())
    return span_export.encode_edge_span(
        (
            trace_id.to_bytes(16, "big"),
            span_id.to_bytes(8, "big"),
            parent_id.to_bytes(8, "big") if parent_id else b"",
            bool(parent_id),
            trace_state,
            method.encoded,
            start,
            end,
            own,
            2 if error is not None else 0,
            error or "",
        )
    )


class EdgeSpans:
    """Starts the edge's server spans: decides sampling first, and makes nothing for a call sampled out."""

    def __init__(self, recorder: span_export.SpanRecorder, decider: Decider) -> None:
        self._recorder = recorder
        self._decider = decider
        self._methods: dict[str, Method] = {}

    def start(
        self, full_method: str, metadata: Mapping[str, Any], peer: str, request_id: str
    ) -> EdgeSpan | UnsampledCall:
        """The call's span, current until it closes; for a call sampled out, only its trace id (in `unsampled`
        until it closes)."""
        header = metadata.get("traceparent")
        parent: SpanContext | None = None
        parent_id, trace_state = 0, ""
        found = _TRACEPARENT.match(header) if isinstance(header, str) else None
        if found is not None:
            version, trace_hex, span_hex, flags_hex, rest = found.groups()
            trace_id, parent_id = int(trace_hex, 16), int(span_hex, 16)
            if version == "ff" or (version == "00" and rest) or not trace_id or not parent_id:
                trace_id, parent_id = 0, 0
            else:
                state = metadata.get("tracestate")
                trace_state = state if isinstance(state, str) else ""
                parent = SpanContext(trace_id, parent_id, True, TraceFlags(int(flags_hex, 16) & 0xFF))
        else:
            trace_id = 0
        if not trace_id:
            trace_id = random.getrandbits(128) or 1
        method = self._methods.get(full_method)
        if method is None:
            method = self._methods[full_method] = Method(full_method)
        if not self._decider.sampled(trace_id, parent, method.name):
            return UnsampledCall(trace_id)
        base = _EMPTY
        if "baggage" in metadata:  # rare: the full propagators, for the baggage they carry
            from opentelemetry import propagate

            base = propagate.extract(metadata)
        return EdgeSpan(self._recorder, method, trace_id, parent_id, trace_state, peer, request_id, base)
