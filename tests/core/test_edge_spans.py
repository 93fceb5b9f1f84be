"""The edge's own server spans (core.edge_spans, core.span_export) without a server: the sampling decision from
`traceparent` and the sampler, what a sampled-out call leaves in the context (nothing but its trace id) and
sends on, and the hand-written OTLP protobuf, read back with the official message classes. A private tracer
provider throughout: the process's global one is never set here."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Decision, ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pynode.core import edge_spans, peer_spans, span_export

METHOD = "/devpynode.auth.v1.AuthService/GetCurrentUser"
PEER = "ipv4:127.0.0.1:5555"


class Kept:
    """An exporter that keeps each request's bytes."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []

    def export(self, batch: span_export.Batch) -> None:
        self.requests.append(ExportTraceServiceRequest.FromString(batch.payload()))

    def shutdown(self) -> None:
        return None

    def spans(self) -> list[tuple[str, Any]]:
        """(scope name, span) of every span exported."""
        return [
            (scope.scope.name, span)
            for request in self.requests
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]


class Platform:
    """What tracing.configure builds, on a private provider."""

    def __init__(self, sampler: str, arg: str = "") -> None:
        self.kept = Kept()
        resource = Resource.create({"service.name": "edge-test"})
        env = {"OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": arg}
        inner = _sdk_sampler(sampler, arg)
        self.provider = TracerProvider(resource=resource, sampler=edge_spans.EdgeAwareSampler(inner),
                                       id_generator=edge_spans.EdgeAwareIds())  # fmt: skip
        self.recorder = span_export.SpanRecorder(self.kept, resource.attributes, ("pynode", ""), edge_spans.encode)
        self.provider.add_span_processor(self.recorder)
        self.spans = edge_spans.EdgeSpans(self.recorder, edge_spans.Decider(env["OTEL_TRACES_SAMPLER"], arg, inner))
        self.tracer = self.provider.get_tracer("child")

    def flush(self) -> list[tuple[str, Any]]:
        self.recorder.force_flush()
        return self.kept.spans()

    def close(self) -> None:
        self.provider.shutdown()


def _sdk_sampler(name: str, arg: str) -> Any:
    from opentelemetry.sdk.trace import sampling

    if name == "parentbased_traceidratio":
        return ParentBased(TraceIdRatioBased(float(arg)))
    return {"always_on": sampling.ALWAYS_ON, "always_off": sampling.ALWAYS_OFF}.get(name, sampling.DEFAULT_ON)


@pytest.fixture
def sampled() -> Any:
    platform = Platform("parentbased_always_on")
    yield platform
    platform.close()


def _traceparent(flags: str) -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-{flags}", trace_id, span_id


def _sent_on() -> str:
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent", "")


def test_a_sampled_out_caller_leaves_no_span_in_the_context_and_its_children_say_so_to_their_peers(
    sampled: Platform,
) -> None:
    header, trace_id, _ = _traceparent("00")
    call = sampled.spans.start(METHOD, {"traceparent": header}, PEER, "r1")
    # Nothing of OpenTelemetry's made for the call: no current span (the SDK used to make one per call).
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert call.quoted() is None and call.trace_hex() == ""
    # A span made inside it (a peer call's, a statement's) is not recorded, is in the caller's trace, and tells
    # the peer not to record either.
    with sampled.tracer.start_as_current_span("peer call") as child:
        assert not child.is_recording()
        sent = _sent_on().split("-")
        assert sent[1] == trace_id and sent[3] == "00"
    call.close("OK", "")
    assert edge_spans.unsampled.get() == 0, "the call's trace id is gone with the call"
    # Outside any call, the sampler decides for itself again.
    with sampled.tracer.start_as_current_span("later") as later:
        assert later.is_recording()
    assert [s.name for _, s in sampled.flush()] == ["later"]


def test_a_sampled_out_local_root_still_propagates_the_unsampled_flag() -> None:
    platform = Platform("always_off")
    try:
        call = platform.spans.start(METHOD, {}, PEER, "r1")
        with platform.tracer.start_as_current_span("peer call"):
            first = _sent_on().split("-")
        with platform.tracer.start_as_current_span("provider call"):
            second = _sent_on().split("-")
        call.close("OK", "")
        # One trace id for the whole call (its own, new), flag 00: the peers start no traces of their own.
        assert first[3] == second[3] == "00" and first[1] == second[1] != "0" * 32
        assert platform.flush() == []
    finally:
        platform.close()


def test_a_sampled_call_is_one_span_with_its_children_in_one_request(sampled: Platform) -> None:
    header, trace_id, parent_id = _traceparent("01")
    call = sampled.spans.start(METHOD, {"traceparent": header, "tracestate": "vendor=1"}, PEER, "req-7")
    call.identify("user-1")
    quoted = call.quoted()
    assert quoted is not None and quoted[1].split("-")[1] == trace_id
    with sampled.tracer.start_as_current_span("SELECT"):
        sent = _sent_on().split("-")
    call.close("INTERNAL", "the database is down")
    spans = sampled.flush()
    assert len(sampled.kept.requests) == 1, "the edge's span and the SDK's go in one request"
    by_name = {span.name: (scope, span) for scope, span in spans}
    scope, server = by_name["devpynode.auth.v1.AuthService/GetCurrentUser"]
    _, child = by_name["SELECT"]
    assert scope == "pynode"
    assert server.trace_id.hex() == trace_id and server.parent_span_id.hex() == parent_id
    assert server.kind == 2 and server.trace_state == "vendor=1"
    assert server.flags & 0x300 == 0x300, "the parent is remote"
    assert server.start_time_unix_nano <= server.end_time_unix_nano
    attributes = {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in server.attributes}
    assert attributes == {
        "rpc.system": "grpc",
        "rpc.service": "devpynode.auth.v1.AuthService",
        "rpc.method": "GetCurrentUser",
        "network.peer.address": PEER,
        "devpynode.request_id": "req-7",
        "enduser.id": "user-1",
        "rpc.grpc.status_code": 13,
    }
    assert server.status.code == 2 and server.status.message == "INTERNAL: the database is down"
    # The SDK's span hangs under the edge's, and named it to its peer.
    assert child.parent_span_id == server.span_id and child.trace_id == server.trace_id
    assert sent[2] == child.span_id.hex() and sent[3] == "01"
    resource = {a.key: a.value.string_value for a in sampled.kept.requests[0].resource_spans[-1].resource.attributes}
    assert resource["service.name"] == "edge-test"
    assert trace.get_current_span() is trace.INVALID_SPAN, "the context is restored when the call ends"


def test_a_callers_mistake_leaves_the_status_unset_and_a_malformed_traceparent_starts_a_trace(
    sampled: Platform,
) -> None:
    call = sampled.spans.start(METHOD, {"traceparent": "00-zz-00-01"}, PEER, "r")
    call.close("NOT_FOUND", "no such user")
    ((_, span),) = sampled.flush()
    assert span.parent_span_id == b"" and span.status.code == 0
    assert span.flags & 0x200 == 0, "a local root"


@pytest.mark.parametrize("arg", ["0.25", "0.5"])
def test_ratio_sampling_agrees_with_the_sdks_sampler(arg: str) -> None:
    sdk = TraceIdRatioBased(float(arg))
    decider = edge_spans.Decider("parentbased_traceidratio", arg, ParentBased(sdk))
    for _ in range(2000):
        trace_id = secrets.randbits(128)
        verdict = sdk.should_sample(None, trace_id, "m").decision
        assert decider.sampled(trace_id, None, "m") == (verdict == Decision.RECORD_AND_SAMPLE)
    # A caller's decision wins under a parent-based sampler; not under a plain one.
    unsampled_parent = trace.SpanContext(1, 1, True, trace.TraceFlags(0))
    assert not decider.sampled(0, unsampled_parent, "m"), "the ratio would take this trace id"
    assert edge_spans.Decider("always_on", "", sdk).sampled(5, unsampled_parent, "m")
    assert not edge_spans.Decider("parentbased_always_off", "", sdk).sampled(5, None, "m")


def test_varints_and_values_decode_as_protobuf() -> None:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    for number in (0, 1, 127, 128, 300, 2**32, 2**63):
        encoded = span_export.attribute("n", number)
        span = Span.FromString(encoded)
        assert span.attributes[0].value.int_value == (number if number < 2**63 else number - 2**64)
    span = Span.FromString(span_export.attribute("list", ["a", "b"]) + span_export.attribute("f", 1.5))
    assert [v.string_value for v in span.attributes[0].value.array_value.values] == ["a", "b"]
    assert span.attributes[1].value.double_value == 1.5
    long_text = "é" * 200
    assert (
        Span.FromString(span_export.string_attribute(span_export.attribute_key("k"), long_text))
        .attributes[0]
        .value.string_value
        == long_text
    )


class _SeenHealth(health.HealthServicer):  # type: ignore[misc]
    """The standard health service, keeping the `traceparent` of each call it gets."""

    def __init__(self) -> None:
        super().__init__(experimental_non_blocking=True)
        self.traceparents: list[str] = []

    async def Check(self, request: Any, context: Any) -> Any:
        self.traceparents.append(dict(context.invocation_metadata()).get("traceparent", ""))
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def Watch(self, request: Any, context: Any) -> Any:
        self.traceparents.append(dict(context.invocation_metadata()).get("traceparent", ""))
        yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
        await asyncio.sleep(30)


async def test_peer_calls_get_client_spans_under_the_calls_span_and_carry_its_decision(sampled: Platform) -> None:
    seen = _SeenHealth()
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(seen, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    peers = peer_spans.PeerSpans(sampled.recorder, edge_spans.Decider("parentbased_always_on", "", DEFAULT_ON))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=peers.interceptors()) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            header, trace_id, _ = _traceparent("01")
            call = sampled.spans.start(METHOD, {"traceparent": header}, PEER, "r1")
            await stub.Check(health_pb2.HealthCheckRequest())
            watch = stub.Watch(health_pb2.HealthCheckRequest())
            async for _ in watch:
                break
            watch.cancel()
            call.close("OK", "")
            unsampled_header, unsampled_trace, _ = _traceparent("00")
            call = sampled.spans.start(METHOD, {"traceparent": unsampled_header}, PEER, "r2")
            await stub.Check(health_pb2.HealthCheckRequest())
            call.close("OK", "")
        await asyncio.sleep(0.1)  # the cancelled stream's end is recorded from its done callback
        spans = {span.name: span for _, span in sampled.flush()}
        server_span = spans["devpynode.auth.v1.AuthService/GetCurrentUser"]
        check, watched = spans["grpc.health.v1.Health/Check"], spans["grpc.health.v1.Health/Watch"]
        assert check.kind == watched.kind == 3 and check.parent_span_id == server_span.span_id
        assert check.trace_id.hex() == trace_id and check.status.code == 0
        assert watched.status.code == 2 and "CANCELLED" in watched.status.message  # a client span: any error is one
        # The peer was told the client span's id, sampled; then, for the sampled-out call, its trace and flag 00.
        assert seen.traceparents[0] == f"00-{trace_id}-{check.span_id.hex()}-01"
        assert seen.traceparents[2].split("-")[1] == unsampled_trace and seen.traceparents[2].endswith("-00")
        assert len(spans) == 3, "the sampled-out call's peer call recorded nothing"
    finally:
        await server.stop(0)
