"""The gRPC edge: request ids, access logs, metrics, declared access control,
contract validation and error mapping, wrapped around every handler of our services.

The handlers are wrapped once, when the services are mounted, rather than by a
grpc.aio ServerInterceptor: an interceptor runs its own coroutine chain on every call
(health and reflection included), which cost a tenth of a cheap RPC's throughput.
One wrapper does everything because the order matters: the request id must exist
before anything logs, and errors from authentication must be mapped like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import itertools
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

import grpc
from devpynode.common.v1 import options_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from pynode.core import api_keys, deadlines, errors, principal, status, tracing, wire
from pynode.core.access_log import AccessLog
from pynode.core.contract import MethodContract, validate
from pynode.core.metrics import MethodLabels, MethodMetrics, ServerMetrics

log = logging.getLogger("pynode.edge")

GATEWAY_HEADER = "x-devpynode-gateway"  # the laptop gateway's secret (pynode.app.gateway adds it)
STREAM_RECHECK_SECONDS = 1.0  # how often a stream asks whether its caller may still be served
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ROLES_FOR: dict[int, frozenset[str]] = {
    options_pb2.ACCESS_USER: frozenset({"user", "admin"}),
    options_pb2.ACCESS_ADMIN: frozenset({"admin"}),
    options_pb2.ACCESS_SERVICE: frozenset({"service"}),
}
_ROLE_NAMES: dict[int, str] = {options_pb2.ACCESS_ADMIN: "admin", options_pb2.ACCESS_SERVICE: "service"}


class _Malformed:
    """Stands in for a request message that did not parse, so the call fails inside the edge
    (INVALID_ARGUMENT, logged and counted) rather than in grpc's own deserialisation (UNKNOWN, a
    traceback per request, no access log)."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None
    parse = deserialize

    def tolerant(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # DecodeError, and RecursionError-like limits of the parser
            return _Malformed(type(exc).__name__)

    return tolerant


def _refuse_malformed(request: Any) -> None:
    raise errors.InvalidArgument(
        "the request is not a valid protobuf message of this method's type",
        reason="MALFORMED_REQUEST",
        metadata={"problem": request.problem},
    )


class _Call:
    """Bookkeeping for one RPC: admission, counting and the final status."""

    __slots__ = (
        "_metadata",
        "checked_at",
        "client",
        "context",
        "contract",
        "edge",
        "labels",
        "metrics",
        "request_id",
        "started",
        "trace",
        "user",
        "who",
    )

    def __init__(
        self,
        edge: Edge,
        contract: MethodContract,
        method: tuple[MethodLabels, MethodMetrics],
        context: grpc.aio.ServicerContext[Any, Any],
    ):
        self.edge = edge
        self.contract = contract
        self.labels, self.metrics = method
        self.context = context
        self.request_id = ""
        self.started = 0.0
        self._metadata: dict[str, Any] = {}
        self.client = principal.NO_CLIENT
        self.user = ""
        self.who: principal.Principal | None = None
        self.checked_at = 0.0
        self.trace: tracing.EdgeCall | None = None

    def begin(self) -> None:
        """Start the clock, count the call, settle the request id and the client's address."""
        self.started = time.perf_counter()
        self.metrics.started += 1
        metadata: dict[str, Any] = dict(self.context.invocation_metadata() or ())  # values: str, or bytes for -bin
        supplied = metadata.get("x-request-id")
        self.request_id = (
            supplied if isinstance(supplied, str) and _REQUEST_ID.match(supplied) else self.edge.new_request_id()
        )
        peer = self.context.peer() or ""
        trusted = self.edge.trust_forwarded_for or self.edge.from_own_gateway(metadata.get(GATEWAY_HEADER))
        forwarded = metadata.get("x-forwarded-for") if trusted else None
        client = principal.ClientInfo(peer, str(metadata.get("user-agent", ""))[:256], forwarded)
        principal.bind(None, client, self.request_id)
        deadlines.bind(self.context.time_remaining())
        self.client = client
        self._metadata = metadata
        if self.edge.spans is not None:
            self.trace = self.edge.spans.start(self.contract.full_method, metadata, client.address, self.request_id)

    async def authorize(self) -> None:
        """Enforce the access level the proto declares (inside the call, so failures are mapped)."""
        header = self._metadata.get("authorization", "")
        scheme, _, token = (header if isinstance(header, str) else "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise errors.Unauthenticated(
                "this call needs an access token: send metadata `authorization: Bearer <access_token>`",
                reason="MISSING_CREDENTIALS",
            )
        who = await self.edge.authenticator.authenticate(token)
        if who.role not in _ROLES_FOR.get(self.contract.access, frozenset()):
            await self._key_refused(who, "ROLE_REQUIRED")
            raise errors.PermissionDenied(
                f"{self.labels.grpc_method} needs the {_ROLE_NAMES.get(self.contract.access, 'user')} role",
                reason="ROLE_REQUIRED",
            )
        if who.api_key_id:
            refusal = api_keys.scope_refusal(who.scope, self.contract.full_method)
            if refusal is not None:
                await self._key_refused(who, "API_KEY_SCOPE")
                raise errors.PermissionDenied(refusal, reason="API_KEY_SCOPE", metadata={"scope": who.scope})
        principal.bind(who)
        self.who = who
        self.checked_at = time.monotonic()
        self.user = who.subject
        if self.trace is not None:
            self.trace.identify(who.subject)

    async def still_valid(self) -> None:
        """For a stream's next message: the caller's session or key still stands (at most once a second; from
        the caches every call uses, so a revocation or a disabled account ends the stream at its next message)."""
        now = time.monotonic()
        if self.who is None or now - self.checked_at < STREAM_RECHECK_SECONDS:
            return
        self.checked_at = now
        check = self.edge.authenticator
        if isinstance(check, principal.LivenessCheck):
            # The session store down: a running stream goes on (it was admitted, and an answer must survive a
            # short outage of the store); only a revocation seen ends it. Asked again in a second.
            with contextlib.suppress(errors.Unavailable):
                await check.still_valid(self.who)

    async def _key_refused(self, who: principal.Principal, reason: str) -> None:
        """An API key's refused use goes to the audit trail (through the issuer, which keeps it)."""
        reporter = self.edge.authenticator
        if who.api_key_id and isinstance(reporter, api_keys.KeyRefusals):
            await reporter.key_refused(who, self.contract.full_method, reason, self.client.address)

    def admit(self, request: Message | wire.LoneBytes) -> Message | wire.LoneBytes:
        """Count and validate one request message; returns it for the servicer."""
        self.metrics.received += 1
        if isinstance(request, wire.LoneBytes):  # its parser held it to the contract (and it has nothing else)
            return request
        if isinstance(request, _Malformed):
            _refuse_malformed(request)
        validate(request)
        return request

    def sent(self) -> None:
        self.metrics.sent += 1

    def succeeded(self) -> None:
        """The handler returned: count and log (its code is OK unless it set one)."""
        self._finish(self.context.code() or grpc.StatusCode.OK, None)
        header = self.trace.quoted() if self.trace is not None else None
        if header is not None:
            self.context.set_trailing_metadata((header,))

    async def failed(self, exc: BaseException) -> None:
        """The handler raised: count, log, and turn domain errors into rich statuses (abort raises)."""
        rich: status_pb2.Status | None = None
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):  # the client went away
            code = grpc.StatusCode.CANCELLED
        elif isinstance(exc, grpc.aio.AbortError):
            code = self.context.code() or grpc.StatusCode.UNKNOWN
        elif isinstance(exc, errors.DomainError):
            code = status.grpc_code(exc)
            rich = status.to_status(exc, code=code)
            if isinstance(exc, errors.Internal):  # a dependency failed: worth a line, not a traceback
                log.warning("%s: %s", self.contract.full_method, exc.message, extra={"request_id": self.request_id})
        elif isinstance(exc, NotImplementedError):
            code = grpc.StatusCode.UNIMPLEMENTED
            rich = status.unimplemented_status(self.contract.full_method)
        else:
            code = grpc.StatusCode.INTERNAL
            rich = status.internal_status()
            log.error(
                "unhandled error in %s", self.contract.full_method, exc_info=exc, extra={"request_id": self.request_id}
            )
        self._finish(code, rich)
        if rich is not None:
            trailing: tuple[tuple[str, str | bytes], ...] = (
                ("grpc-status-details-bin", rich.SerializeToString()),
                ("x-request-id", self.request_id),
            )
            header = self.trace.quoted() if self.trace is not None else None
            if header is not None:
                trailing += (header,)
            await self.context.abort(code, rich.message, trailing_metadata=trailing)

    def _finish(self, code: grpc.StatusCode, rich: status_pb2.Status | None) -> None:
        elapsed = time.perf_counter() - self.started
        self.metrics.finished(code.name, elapsed)
        trace_id = ""
        if self.trace is not None:
            trace_id = self.trace.trace_hex()
            self.trace.close(code.name, _reason(rich))
        self.edge.access_log.record(
            self.request_id,
            self.contract.full_method,
            code.name,
            round(elapsed * 1000, 3),
            self.client.address,
            _reason(rich),
            self.user,
            trace_id,
        )


def _reason(rich: status_pb2.Status | None) -> str:
    # The client-facing message only: never request fields, tokens or internals.
    if rich is None:
        return ""
    return str(rich.message[:200])


Behavior = Callable[..., Any]


async def _only_message(context: grpc.aio.ServicerContext[Any, Any]) -> Message:
    """The request message of a unary call; INVALID_ARGUMENT when the client ended its side without one.

    Exactly one read, as grpc's own unary handlers make: a second one, to refuse a client that sent more than
    one message, cost a cheap call a tenth of its throughput (one more completion-queue operation per call),
    and what follows the first message is ignored, as grpc's unary handlers ignore it. `context.read()`, not
    the request iterator: the iterator is an async generator around the same read."""
    found = await context.read()
    if found is grpc.aio.EOF:
        raise errors.InvalidArgument(
            "the call ended without its request message; send exactly one", reason="MISSING_REQUEST_MESSAGE"
        )
    return found  # type: ignore[no-any-return]


class _HandlerCapture:
    """Stands in for the server while a generated `add_*_to_server` hands over its handlers."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        return None

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.service, self.handlers = service, dict(handlers)


class _Routes(grpc.GenericRpcHandler):
    """Every wrapped handler of one server, found by its full method name in one dictionary.

    Generic handlers only, not grpc's registered methods (`add_registered_method_handlers`): grpc.aio keeps one
    pending request per registered method and waits on all of them (`asyncio.wait`) for every call it accepts,
    so with our ~80 methods each call paid for 80 futures' callbacks, a tenth of a cheap call's CPU (issue 25).
    One dictionary rather than a generic handler per service: grpc asks each in turn."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
        for name, handler in handlers.items():
            self._handlers[f"/{service}/{name}"] = handler

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        return self._handlers.get(handler_call_details.method)


class Edge:
    """Wraps every handler of our services; health and reflection are mounted bare."""

    def __init__(
        self,
        contracts: dict[str, MethodContract],
        metrics: ServerMetrics,
        authenticator: principal.Authenticator,
        access_log: AccessLog,
        *,
        trust_forwarded_for: bool = False,
    ):
        self.access_log = access_log
        self.contracts = contracts
        # Request ids: a random per-process prefix and a counter (unique, and cheaper than
        # urandom per call).
        self._id_prefix = os.urandom(6).hex()
        self._ids = itertools.count(1)
        self.metrics = metrics
        self.authenticator = authenticator
        self.trust_forwarded_for = trust_forwarded_for
        self.spans = tracing.server_spans()  # None unless OTEL_* variables asked for traces before the server was made
        # Set while this process runs its own gateway (an Envoy child): the secret Envoy adds to every call it
        # forwards, so its x-forwarded-for (the browser's address) is believed and per-address limits keep
        # working. Any other caller's, loopback ones included, is not: they dial the gRPC port directly.
        self._gateway_secret = b""
        # Every wrapped handler by full method name: what `core.local_calls` runs for in-process callers.
        self.mounted: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self._routes: dict[int, _Routes] = {}  # per server it mounted into (by id: a server is not hashable)

    def trust_gateway(self, secret: str) -> None:
        """Believe x-forwarded-for on calls that carry `secret` in GATEWAY_HEADER (this process's Envoy)."""
        self._gateway_secret = secret.encode()

    def from_own_gateway(self, presented: Any) -> bool:
        """Whether a call came through this process's own gateway (compared in constant time)."""
        if not self._gateway_secret or not isinstance(presented, str):
            return False
        return hmac.compare_digest(presented.encode(), self._gateway_secret)

    def new_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):010x}"

    def mount(
        self,
        server: grpc.aio.Server,
        add_to_server: Callable[[Any, Any], None],
        servicer: Any,
        *,
        open_to_all: bool = False,
        parsers: Mapping[str, Callable[[bytes], Any]] | None = None,
    ) -> None:
        """Register `servicer` through its generated `add_*_to_server`, every handler wrapped. Our
        services' access comes from their contracts; `open_to_all` mounts a standard service that has
        none (health, reflection) as anonymous, still logged and counted. `parsers` replace the generated
        request deserializers of the methods they name (`core.wire`)."""
        capture = _HandlerCapture()
        add_to_server(servicer, capture)
        wrapped = {}
        for name, handler in capture.handlers.items():
            full = f"/{capture.service}/{name}"
            contract = self.contracts.get(full)
            if contract is None:
                if not open_to_all:
                    raise KeyError(f"{full} has no contract")
                contract = MethodContract(full, options_pb2.ACCESS_ANONYMOUS)
            wrapped[name] = self._wrap(handler, contract, (parsers or {}).get(name))
            self.mounted[full] = wrapped[name]
        routes = self._routes.get(id(server))
        if routes is None:
            routes = self._routes[id(server)] = _Routes()
            server.add_generic_rpc_handlers((routes,))
        routes.add(capture.service, wrapped)

    def _method(
        self, contract: MethodContract, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> tuple[MethodLabels, MethodMetrics]:
        kind = {
            (False, False): "unary",
            (False, True): "server_stream",
            (True, False): "client_stream",
            (True, True): "bidi_stream",
        }[(handler.request_streaming, handler.response_streaming)]
        service, _, name = contract.full_method.lstrip("/").partition("/")
        labels = MethodLabels(kind, service, name)
        return labels, self.metrics.for_method(labels)

    def _wrap(
        self,
        handler: grpc.RpcMethodHandler[Any, Any],
        contract: MethodContract,
        parser: Callable[[bytes], Any] | None = None,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        labels = self._method(contract, handler)
        anonymous = contract.access == options_pb2.ACCESS_ANONYMOUS
        kwargs = {
            "request_deserializer": _tolerant(parser or handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }

        # Two skeletons, one per response shape; the four handler kinds differ only in how
        # they hand the (checked) request or request stream to the servicer.
        async def answer(context: grpc.aio.ServicerContext[Any, Any], invoke: Callable[[_Call], Any]) -> Any:
            call = _Call(self, contract, labels, context)
            call.begin()
            try:
                if not anonymous:
                    await call.authorize()
                response = await invoke(call)
            except BaseException as exc:
                await call.failed(exc)
                raise
            call.sent()
            call.succeeded()
            return response

        async def stream(
            context: grpc.aio.ServicerContext[Any, Any], invoke: Callable[[_Call], Any]
        ) -> AsyncGenerator[Any, None]:
            call = _Call(self, contract, labels, context)
            call.begin()
            try:
                if not anonymous:
                    await call.authorize()
                produced = invoke(call)
                if inspect.isawaitable(produced):  # a handler that writes with context.write (health Watch)
                    await produced
                else:
                    # aclosing: a caller that goes away closes the servicer's generator (and whatever it
                    # holds open upstream) now, not when the garbage collector finds it.
                    async with contextlib.aclosing(produced) as responses:
                        async for response in responses:
                            await call.still_valid()  # revoked mid-stream: nothing more is sent
                            call.sent()
                            yield response
            except BaseException as exc:
                await call.failed(exc)
                raise
            call.succeeded()

        async def checked(call: _Call, requests: AsyncIterator[Message]) -> AsyncIterator[Message]:
            async for request in requests:
                call.admit(request)
                yield request

        # Unary requests are read as streams (of one message, `_only_message`): grpc.aio never answers a unary
        # call whose client ends its side without a message (it holds the call until the connection's age), so
        # the edge reads it and answers INVALID_ARGUMENT at once, as grpc-java does.
        if handler.unary_unary is not None:
            inner_uu: Any = handler.unary_unary

            # The cheapest calls take this path: `answer`'s skeleton written out, without its two coroutine
            # layers (each a frame to create and resume per call).
            async def unary_unary(requests: AsyncIterator[Message], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                call = _Call(self, contract, labels, context)
                call.begin()
                try:
                    if not anonymous:
                        await call.authorize()
                    response = await inner_uu(call.admit(await _only_message(context)), context)
                except BaseException as exc:
                    await call.failed(exc)
                    raise
                call.sent()
                call.succeeded()
                return response

            return grpc.stream_unary_rpc_method_handler(unary_unary, **kwargs)
        if handler.stream_unary is not None:
            inner_su: Any = handler.stream_unary

            async def stream_unary(
                requests: AsyncIterator[Message], context: grpc.aio.ServicerContext[Any, Any]
            ) -> Any:
                return await answer(context, lambda call: inner_su(checked(call, requests), context))

            return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
        if handler.unary_stream is not None:
            inner_us: Any = handler.unary_stream

            async def produce(call: _Call, requests: AsyncIterator[Message], context: Any) -> AsyncIterator[Any]:
                produced = inner_us(call.admit(await _only_message(context)), context)
                if inspect.isawaitable(produced):  # a handler that writes with context.write (health Watch)
                    await produced
                    return
                async with contextlib.aclosing(produced) as responses:
                    async for response in responses:
                        yield response

            async def unary_stream(
                requests: AsyncIterator[Message], context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                # aclosing: when the client goes away, the skeleton sees it at once, not at garbage collection.
                async with contextlib.aclosing(stream(context, lambda call: produce(call, requests, context))) as out:
                    async for response in out:
                        yield response

            return grpc.stream_stream_rpc_method_handler(unary_stream, **kwargs)
        inner_ss: Any = handler.stream_stream

        async def stream_stream(
            requests: AsyncIterator[Message], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with contextlib.aclosing(
                stream(context, lambda call: inner_ss(checked(call, requests), context))
            ) as out:
                async for response in out:
                    yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)
