"""The gRPC edge: one server interceptor for request ids, access logs, metrics,
declared access control, contract validation and error mapping.

One interceptor (not five) because each one costs a handler wrap per call, and
the order between them matters: the request id must exist before anything logs,
and errors from authentication must be mapped like any other.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from devpynode.common.v1 import options_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from pynode.core import errors, principal, status
from pynode.core.contract import MethodContract, validate
from pynode.core.metrics import MethodLabels, ServerMetrics

access_log = logging.getLogger("pynode.access")
log = logging.getLogger("pynode.edge")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ROLES_FOR: dict[int, frozenset[str]] = {
    options_pb2.ACCESS_USER: frozenset({"user", "admin"}),
    options_pb2.ACCESS_ADMIN: frozenset({"admin"}),
    options_pb2.ACCESS_SERVICE: frozenset({"service"}),
}
_ROLE_NAMES: dict[int, str] = {options_pb2.ACCESS_ADMIN: "admin", options_pb2.ACCESS_SERVICE: "service"}


def client_address(context: grpc.aio.ServicerContext[Any, Any], metadata: dict[str, str], trust_xff: bool) -> str:
    """The caller's IP: the peer, or the first x-forwarded-for hop behind a trusted proxy."""
    if trust_xff and metadata.get("x-forwarded-for"):
        return metadata["x-forwarded-for"].split(",")[0].strip()[:64]
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer[:64]


class _Call:
    """Bookkeeping for one RPC: admission, counting and the final status."""

    __slots__ = ("_metadata", "context", "contract", "edge", "labels", "request_id", "started")

    def __init__(
        self,
        edge: EdgeInterceptor,
        contract: MethodContract,
        labels: MethodLabels,
        context: grpc.aio.ServicerContext[Any, Any],
    ):
        self.edge = edge
        self.contract = contract
        self.labels = labels
        self.context = context
        self.request_id = ""
        self.started = 0.0
        self._metadata: dict[str, str] = {}

    async def __aenter__(self) -> _Call:
        self.started = time.perf_counter()
        self.edge.metrics.started.labels(*self._label_values()).inc()
        metadata = {key: value for key, value in self.context.invocation_metadata() or () if isinstance(value, str)}
        supplied = metadata.get("x-request-id", "")
        self.request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        client = principal.ClientInfo(
            client_address(self.context, metadata, self.edge.trust_forwarded_for),
            metadata.get("user-agent", "")[:256],
        )
        principal.bind(None, client)
        self._metadata = metadata
        return self

    async def authorize(self) -> None:
        """Enforce the access level the proto declares (inside the call, so failures are mapped)."""
        if self.contract.access == options_pb2.ACCESS_ANONYMOUS:
            return
        client = principal.current_client()
        who = await self._authenticate(self._metadata)
        principal.bind(
            principal.Principal(who.subject, who.role, who.session_id, client.address, client.user_agent), client
        )

    async def _authenticate(self, metadata: dict[str, str]) -> principal.Principal:
        scheme, _, token = metadata.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.Unauthenticated(
                "this call needs an access token: send metadata `authorization: Bearer <access_token>`",
                reason="MISSING_CREDENTIALS",
            )
        if self.edge.authenticator is None:
            raise errors.Unavailable("authentication is not configured in this process", reason="NO_AUTHENTICATOR")
        who = await self.edge.authenticator.authenticate(token.strip())
        if who.role not in _ROLES_FOR.get(self.contract.access, frozenset()):
            raise errors.PermissionDenied(
                f"{self.labels.grpc_method} needs the {_ROLE_NAMES.get(self.contract.access, 'user')} role",
                reason="ROLE_REQUIRED",
            )
        return who

    def _label_values(self) -> tuple[str, str, str]:
        return (self.labels.grpc_type, self.labels.grpc_service, self.labels.grpc_method)

    def admit(self, request: Message) -> None:
        self.edge.metrics.msg_received.labels(*self._label_values()).inc()
        validate(request)

    def sent(self) -> None:
        self.edge.metrics.msg_sent.labels(*self._label_values()).inc()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        rich: status_pb2.Status | None = None
        if exc is None:
            code = grpc.StatusCode.OK
            if self.context.code() is not None:
                code = self.context.code()
        elif isinstance(exc, asyncio.CancelledError):
            code = grpc.StatusCode.CANCELLED
        elif isinstance(exc, grpc.aio.AbortError):
            code = self.context.code() or grpc.StatusCode.UNKNOWN
        elif isinstance(exc, errors.DomainError):
            code = status.grpc_code(exc)
            rich = status.to_status(exc, code=code)
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
            await self.context.abort(
                code,
                rich.message,
                trailing_metadata=(
                    ("grpc-status-details-bin", rich.SerializeToString()),
                    ("x-request-id", self.request_id),
                ),
            )
        return False

    def _finish(self, code: grpc.StatusCode, rich: status_pb2.Status | None) -> None:
        elapsed = time.perf_counter() - self.started
        values = self._label_values()
        self.edge.metrics.handled.labels(*values, code.name).inc()
        self.edge.metrics.handling_seconds.labels(*values).observe(elapsed)
        if access_log.isEnabledFor(logging.INFO):
            client = principal.current_client()
            access_log.info(
                "rpc",
                extra={
                    "request_id": self.request_id,
                    "method": self.contract.full_method,
                    "code": code.name,
                    "duration_ms": round(elapsed * 1000, 3),
                    "peer": client.address,
                    "reason": _reason(rich),
                },
            )


def _reason(rich: status_pb2.Status | None) -> str:
    if rich is None:
        return ""
    return str(rich.message[:200])


Behavior = Callable[..., Any]


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every RPC declared in our contracts; health and reflection pass through untouched."""

    def __init__(
        self,
        contracts: dict[str, MethodContract],
        metrics: ServerMetrics,
        authenticator: principal.Authenticator | None,
        *,
        trust_forwarded_for: bool = False,
    ):
        self.contracts = contracts
        self.metrics = metrics
        self.authenticator = authenticator
        self.trust_forwarded_for = trust_forwarded_for
        self._labels: dict[str, MethodLabels] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        contract = self.contracts.get(handler_call_details.method)
        if handler is None or contract is None:
            return handler
        return self._wrap(handler, contract)

    def _labels_for(self, contract: MethodContract, handler: grpc.RpcMethodHandler[Any, Any]) -> MethodLabels:
        labels = self._labels.get(contract.full_method)
        if labels is None:
            kind = {
                (False, False): "unary",
                (False, True): "server_stream",
                (True, False): "client_stream",
                (True, True): "bidi_stream",
            }[(handler.request_streaming, handler.response_streaming)]
            service, _, method = contract.full_method.lstrip("/").partition("/")
            labels = self._labels[contract.full_method] = MethodLabels(kind, service, method)
        return labels

    def _wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], contract: MethodContract
    ) -> grpc.RpcMethodHandler[Any, Any]:
        labels = self._labels_for(contract, handler)
        edge = self
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            inner_uu: Any = handler.unary_unary

            async def unary_unary(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                async with _Call(edge, contract, labels, context) as call:
                    await call.authorize()
                    call.admit(request)
                    response = await inner_uu(request, context)
                    call.sent()
                    return response

            return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
        if handler.unary_stream is not None:
            inner_us: Any = handler.unary_stream

            async def unary_stream(request: Message, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
                async with _Call(edge, contract, labels, context) as call:
                    await call.authorize()
                    call.admit(request)
                    async for response in inner_us(request, context):
                        call.sent()
                        yield response

            return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)

        async def checked(call: _Call, requests: AsyncIterator[Message]) -> AsyncIterator[Message]:
            async for request in requests:
                call.admit(request)
                yield request

        if handler.stream_unary is not None:
            inner_su: Any = handler.stream_unary

            async def stream_unary(
                requests: AsyncIterator[Message], context: grpc.aio.ServicerContext[Any, Any]
            ) -> Any:
                async with _Call(edge, contract, labels, context) as call:
                    await call.authorize()
                    response = await inner_su(checked(call, requests), context)
                    call.sent()
                    return response

            return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
        inner_ss: Any = handler.stream_stream

        async def stream_stream(
            requests: AsyncIterator[Message], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with _Call(edge, contract, labels, context) as call:
                await call.authorize()
                async for response in inner_ss(checked(call, requests), context):
                    call.sent()
                    yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)
