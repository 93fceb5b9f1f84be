"""Client spans for calls to other services, recorded as the edge records its server spans (core.edge_spans):
a tuple for the span recorder, `traceparent` written by hand. Replaces opentelemetry-instrumentation-grpc's
interceptors, whose SDK span per peer call (and its encoding) cost what a server span used to.

Inside a sampled call the peer call gets a recorded CLIENT span, child of whatever span is current (the edge's,
or an SDK span such as a chat answer's job). Inside a sampled-out call it records nothing and sends the caller's
trace id with flag 00. Outside any call (a background job) the sampler decides, as for a root span.

Imported only when tracing is on (it imports OpenTelemetry's API).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import trace

from pynode.core import edge_spans, span_export

_FLAGS = ("-00", "-01")


class PeerSpans:
    """The client spans of peer calls; `interceptors()` for a channel (grpc.aio files each interceptor under
    one kind of call only, so there is one per kind)."""

    def __init__(self, recorder: span_export.SpanRecorder, decider: edge_spans.Decider) -> None:
        self._recorder = recorder
        self._decider = decider
        self._methods: dict[str, edge_spans.Method] = {}
        self._ending: set[asyncio.Future[None]] = set()

    def _start(self, details: grpc.aio.ClientCallDetails) -> tuple[grpc.aio.ClientCallDetails, list[Any] | None]:
        """The call's details with `traceparent` (and `tracestate`) added, and its span's record so far (None
        when nothing is recorded)."""
        name = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        method = self._methods.get(name)
        if method is None:
            method = self._methods[name] = edge_spans.Method(name, kind=3)
        current = trace.get_current_span()
        span_id = random.getrandbits(64) or 1
        if isinstance(current, edge_spans.EdgeSpan):
            trace_id, parent_id, state, sampled = current.trace, current.span_id, current.trace_state, True
        else:
            ctx = current.get_span_context()
            if ctx.is_valid:
                trace_id, parent_id, sampled = ctx.trace_id, ctx.span_id, bool(ctx.trace_flags.sampled)
                state = ctx.trace_state.to_header() if ctx.trace_state else ""
            else:
                trace_id, parent_id, state = edge_spans.unsampled.get(), 0, ""
                sampled = False
                if not trace_id:  # no call around it: a root, as the sampler says
                    trace_id = random.getrandbits(128) or 1
                    sampled = self._decider.sampled(trace_id, None, method.name)
        metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
        metadata["traceparent"] = f"00-{trace_id:032x}-{span_id:016x}{_FLAGS[sampled]}"
        if state:
            metadata["tracestate"] = state
        traced = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        if not sampled:
            return traced, None
        return traced, [trace_id, span_id, parent_id, state, method, time.time_ns()]

    def _finish(self, record: list[Any], code: grpc.StatusCode, details: str) -> None:
        name = code.name
        error = None if code == grpc.StatusCode.OK else (f"{name}: {details}" if details else name)
        trace_id, span_id, parent_id, state, method, start = record
        code_number = code.value[0]
        self._recorder.edge(
            (trace_id, span_id, parent_id, state, method, start, time.time_ns(), "", "", "", code_number, error, None)
        )

    def _on_done(self, record: list[Any]) -> Callable[[Any], None]:
        def done(call: Any) -> None:
            if call.cancelled():
                self._finish(record, grpc.StatusCode.CANCELLED, "")
                return
            # The code is a coroutine even on a finished call: read it in a task (kept until it ends).
            task = asyncio.ensure_future(self._ended(call, record))
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)

        return done

    async def _ended(self, call: Any, record: list[Any]) -> None:
        self._finish(record, await call.code(), await call.details() or "")

    def interceptors(self) -> list[Any]:
        return [_UnaryUnary(self), _UnaryStream(self), _StreamUnary(self), _StreamStream(self)]

    async def unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        traced, record = self._start(details)
        call = await continuation(traced, request)
        if record is not None:
            # Awaiting the code waits for the answer (what the caller does next anyway); the call is returned whole.
            self._finish(record, await call.code(), await call.details() or "")
        return call

    async def streaming(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        traced, record = self._start(details)
        call = await continuation(traced, request)
        if record is not None:
            call.add_done_callback(self._on_done(record))
        return call


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, spans: PeerSpans) -> None:
        self._spans = spans

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await self._spans.unary(continuation, client_call_details, request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, spans: PeerSpans) -> None:
        self._spans = spans

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await self._spans.streaming(continuation, client_call_details, request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, spans: PeerSpans) -> None:
        self._spans = spans

    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._spans.streaming(continuation, client_call_details, request_iterator)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, spans: PeerSpans) -> None:
        self._spans = spans

    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._spans.streaming(continuation, client_call_details, request_iterator)
