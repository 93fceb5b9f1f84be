"""Traces end to end: `devpynode serve` (with its Envoy child) exporting to a real OTLP collector (rotel), one
chat message from the browsers' path (grpc-web through Envoy) followed from the gateway through chat, the AI
router and the provider's HTTP call to the database, and nothing at all when tracing is off."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from devpynode.ai.v1 import ai_pb2, ai_pb2_grpc
from devpynode.auth.v1 import auth_pb2
from devpynode.chat.v1 import chat_pb2

from tests.ai.fakes import FakeProvider
from tests.client import PASSWORD, new_email
from tests.collector import Collector, Span, SpanStore, start_collector
from tests.gateway.grpcweb import call, decoded
from tests.gateway.test_local_gateway import _port, _serve

SERVER, CLIENT = 2, 3  # OTLP span kinds
ERROR = 2  # OTLP status code


@dataclass
class Traced:
    """A traced laptop platform: its ports, the collector and the trace store behind it, and a fake provider."""

    http: str
    grpc_port: int
    store: SpanStore
    collector: Collector
    provider: FakeProvider
    process: asyncio.subprocess.Process


async def _traced(tmp_path: Path, **extra: str) -> AsyncIterator[Traced]:
    store = SpanStore()
    await store.start()
    collector = start_collector(store.port, tmp_path / "rotel.log")
    provider = await FakeProvider("openai").start()
    http_port = _port()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # the batch processor exports every 0.1 s instead of 5 s
        "DEVPYNODE_OPENAI_BASE_URL": provider.url,
        "DEVPYNODE_OPENAI_API_KEY": "sk-test",
        **extra,
    }
    process, grpc_port, _ = await _serve(tmp_path, http_port, env)
    try:
        yield Traced(f"http://127.0.0.1:{http_port}", grpc_port, store, collector, provider, process)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
        collector.stop()
        await provider.stop()
        await store.stop()


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[Traced]:
    async for platform in _traced(tmp_path):
        yield platform


def _method(span: Span) -> object:
    return span.attributes.get("http.request.method", span.attributes.get("http.method"))


def _ancestors(spans: list[Span], span: Span) -> list[Span]:
    by_id = {s.span_id: s for s in spans}
    found = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        found.append(span)
    return found


async def _register_and_chat(platform: Traced, http: httpx.AsyncClient, traceparent: str) -> tuple[object, str]:
    base = platform.http
    email = new_email()
    registered = await call(
        http,
        f"{base}/devpynode.auth.v1.AuthService/Register",
        auth_pb2.RegisterRequest(email=email, password=PASSWORD, display_name="Tracer"),
    )
    token = decoded(registered, auth_pb2.RegisterResponse)[0].tokens.access_token
    created = await call(
        http,
        f"{base}/devpynode.chat.v1.ChatService/CreateConversation",
        chat_pb2.CreateConversationRequest(title="traced", model="openai/gpt-test"),
        token,
    )
    conversation = decoded(created, chat_pb2.CreateConversationResponse)[0].conversation
    sent = await call(
        http,
        f"{base}/devpynode.chat.v1.ChatService/SendMessage",
        chat_pb2.SendMessageRequest(conversation_id=conversation.id, text="follow me"),
        token,
        headers={"traceparent": traceparent},
    )
    return sent, token


async def test_one_chat_message_is_one_trace_from_the_gateway_to_the_provider_and_the_database(
    traced: Traced,
) -> None:
    trace_id = secrets.token_hex(16)
    async with httpx.AsyncClient() as http:
        sent, _ = await _register_and_chat(traced, http, f"00-{trace_id}-{secrets.token_hex(8)}-01")
    assert sent.status == 0, sent.message
    events = decoded(sent, chat_pb2.SendMessageResponse)
    assert events[-1].WhichOneof("event") == "assistant_message"
    # The user can quote the trace: the answer's trailers name it.
    assert sent.trailers["traceresponse"].split("-")[1] == trace_id

    store = traced.store

    def complete() -> list[Span]:
        spans = store.trace(trace_id)
        names = {s.name for s in spans}
        wanted = {"devpynode.chat.v1.ChatService/SendMessage", "devpynode.ai.v1.AIRouterService/GenerateForUser"}
        providers = [s for s in spans if s.kind == CLIENT and _method(s) == "POST"]
        return spans if wanted <= names and providers and any(s.service == "devpynode-gateway" for s in spans) else []

    spans = await store.wait_for("complete trace of the chat message", complete)
    # Server spans by name (a peer call's client span has its method's name too, as the conventions say).
    by_name = {s.name: s for s in spans if s.kind == SERVER}
    chat = by_name["devpynode.chat.v1.ChatService/SendMessage"]
    router = by_name["devpynode.ai.v1.AIRouterService/GenerateForUser"]
    assert chat.kind == SERVER and chat.service == "devpynode" and chat.attributes["rpc.system"] == "grpc"
    assert chat.attributes["rpc.grpc.status_code"] == 0 and chat.status != ERROR
    assert chat.attributes["enduser.id"], "the server span names its caller"
    # Envoy's spans come first: the chat server span hangs under the gateway's.
    assert any(a.service == "devpynode-gateway" for a in _ancestors(spans, chat))
    # The router's server span descends from chat's, through the answer job and the peer call's client span.
    above_router = _ancestors(spans, router)
    assert above_router[0].kind == CLIENT, "a client span for the peer call"
    assert above_router[0].name == router.name and above_router[0].attributes["rpc.grpc.status_code"] == 0
    assert chat in above_router
    assert any(s.name == "chat.answer" for s in above_router)
    # The provider's HTTP request is the router's child, and it carried the trace to the provider.
    provider_call = next(s for s in spans if s.kind == CLIENT and _method(s) == "POST")
    assert router in _ancestors(spans, provider_call)
    assert traced.provider.chats[-1].headers["traceparent"].split("-")[1] == trace_id
    # The database statements of the message are in the same trace (SQLite on the embedded defaults).
    statements = [s for s in spans if s.attributes.get("db.system") or s.attributes.get("db.system.name")]
    assert statements, "database spans"
    assert all(chat in _ancestors(spans, s) or router in _ancestors(spans, s) for s in statements)

    # The registration's audit event keeps its trace too (the register call's own trace: any valid id).
    register = next(s for s in store.spans if s.name == "devpynode.auth.v1.AuthService/Register")
    audit_trace = register.trace_id
    # The trace id is in the process's JSON log lines of that request (the access log's line for SendMessage).
    traced.process.terminate()
    assert traced.process.stderr is not None
    _, err = await asyncio.wait_for(traced.process.communicate(), 30)
    lines = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert any(
        line.get("trace_id") == trace_id and line.get("method") == "/devpynode.chat.v1.ChatService/SendMessage"
        for line in lines
    ), "the access log line carries the trace id"
    assert any(
        line.get("audit_kind") == "register" and line.get("trace_id") == audit_trace and line.get("detail_trace_id")
        for line in lines
    ), "the audit event of the registration carries its trace id"


async def test_a_cancelled_stream_ends_its_spans_as_cancelled_not_failed(traced: Traced) -> None:
    trace_id = secrets.token_hex(16)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.grpc_port}") as channel:
        from devpynode.auth.v1 import auth_pb2_grpc

        auth = auth_pb2_grpc.AuthServiceStub(channel)
        registered = await auth.Register(
            auth_pb2.RegisterRequest(email=new_email(), password=PASSWORD, display_name="Canceller")
        )
        metadata = [
            ("authorization", f"Bearer {registered.tokens.access_token}"),
            ("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"),
        ]
        stream = ai_pb2_grpc.AIRouterServiceStub(channel).Generate(
            ai_pb2.GenerateRequest(
                model="builtin/echo",
                messages=[ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content="one two three four five six")],
                options=ai_pb2.GenerateOptions(tokens_per_second=4),
            ),
            metadata=metadata,
        )
        async for _ in stream:
            break  # the first token arrived: the stream is running
        stream.cancel()

    def ended() -> list[Span]:
        return [s for s in traced.store.trace(trace_id) if s.name == "devpynode.ai.v1.AIRouterService/Generate"]

    (span,) = await traced.store.wait_for("the cancelled Generate's server span", ended)
    assert span.attributes["rpc.grpc.status_code"] == 1  # CANCELLED
    assert span.status != ERROR, "a caller that hangs up is not a server failure"


async def test_sampled_out_requests_export_nothing_and_name_no_trace(tmp_path: Path) -> None:
    async for platform in _traced(tmp_path, OTEL_TRACES_SAMPLER="always_off"):
        async with httpx.AsyncClient() as http:
            registered = await call(
                http,
                f"{platform.http}/devpynode.auth.v1.AuthService/Register",
                auth_pb2.RegisterRequest(email=new_email(), password=PASSWORD, display_name="Unsampled"),
            )
        assert registered.status is None or registered.status == 0
        assert "traceresponse" not in registered.trailers, "an unrecorded trace is nothing to quote"
        await asyncio.sleep(1.0)  # ten export rounds of the batch processor
        assert platform.store.spans == []


def test_with_tracing_off_no_tracer_exporter_or_instrumentation_is_loaded(tmp_path: Path) -> None:
    # The in-process platform is built and called the way `serve` does it, without any OTEL_* variable. (redis-py
    # imports OpenTelemetry's API and metrics SDK by itself when they are installed; that is its own business.)
    script = """
import asyncio, sys
from pynode.app.bootstrap import build
from pynode.app.server import MeshServer
from pynode.app.settings import load
from pynode.core import tracing

async def main():
    assert not tracing.configure("devpynode")
    server = MeshServer(await build(load(data_dir=sys.argv[1], grpc_port=0, metrics_port=-1, bcrypt_cost=4)))
    await server.start()
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    await server.stop(0)
    tracing_parts = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.instrumentation")
    print(sorted(m for m in sys.modules if m.startswith(tracing_parts)))

asyncio.run(main())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "data")], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_the_edges_hand_written_spans_and_the_sdks_reach_a_collector_over_either_protocol(
    protocol: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    from pynode.core import edge_spans, span_export

    store = SpanStore()
    await store.start()
    collector = start_collector(store.port, tmp_path / "rotel.log")
    try:
        endpoint = collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        resource = Resource.create({"service.name": "export-test"})
        recorder = span_export.SpanRecorder(
            span_export.bytes_exporter(protocol), resource.attributes, ("pynode", ""), edge_spans.encode
        )
        provider = TracerProvider(resource=resource, sampler=edge_spans.EdgeAwareSampler(ALWAYS_ON))
        provider.add_span_processor(recorder)
        spans = edge_spans.EdgeSpans(recorder, edge_spans.Decider("always_on", "", ALWAYS_ON))
        call = spans.start("/devpynode.chat.v1.ChatService/SendMessage", {}, "ipv4:127.0.0.1:1", "req-1")
        with provider.get_tracer("child").start_as_current_span("SELECT"):
            pass
        call.close("UNAVAILABLE", "")
        await asyncio.to_thread(recorder.force_flush)

        def arrived() -> list[Span]:
            return store.spans if len(store.spans) == 2 else []

        by_name = {s.name: s for s in await store.wait_for("both spans", arrived)}
        server, child = by_name["devpynode.chat.v1.ChatService/SendMessage"], by_name["SELECT"]
        assert server.name == "devpynode.chat.v1.ChatService/SendMessage" and server.kind == SERVER
        assert server.service == child.service == "export-test"
        assert server.status == ERROR and server.status_message == "UNAVAILABLE"
        assert child.parent_id == server.span_id and child.trace_id == server.trace_id
        await asyncio.to_thread(provider.shutdown)
    finally:
        collector.stop()
        await store.stop()
