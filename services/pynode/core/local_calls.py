"""Calls to a service mounted in this process, without the loopback gRPC hop.

A caller in the same process (the OpenAI-compatible door in front of the AI router) runs the very handler the
gRPC server runs: the edge-wrapped one (`Edge.mounted`), so authentication (access tokens and personal API
keys, their scopes, revocation mid-stream), validation, limits, metrics, the access log and the audit trail are
the same code. The request object and the caller's metadata are handed over through `LocalContext`, a stand-in
for grpc's servicer context with what the edge asks of it; a refusal the edge would send as a status comes back
as the same domain error a peer's gRPC failure maps to (`peers.call_error`).

What the hop cost and this saves: serialising each message twice, grpc's completion queue on both sides and a
task switch per message. What is not the same: the request is not copied (servicers never change theirs) and
grpc's message size cap does not apply (the caller bounds its own input).

Each call must run in a contextvars context of its own, as each gRPC call runs in a task of its own: the edge
binds the caller, the request id and the deadline into the running context.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc

from pynode.core import errors
from pynode.core.peers import call_error

# The address the edge sees for an in-process caller: the same loopback a gRPC call from this process comes from.
LOOPBACK_PEER = "ipv4:127.0.0.1:0"
USER_AGENT = "devpynode-in-process"


class LocalAbort(Exception):
    """The edge ended the call with a status (what `context.abort` sends to a gRPC client)."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: Sequence[tuple[str, str | bytes]]) -> None:
        super().__init__(code, details)
        self.code = code
        self.details = details
        self.trailing = tuple(trailing)

    def details_bin(self) -> bytes | None:
        for key, value in self.trailing:
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                return value
        return None


class LocalContext:
    """What the edge uses of `grpc.aio.ServicerContext`, for one in-process call."""

    __slots__ = ("_code", "_deadline", "_metadata", "_request", "trailing")

    def __init__(self, request: Any, metadata: Sequence[tuple[str, str]], timeout: float | None) -> None:
        self._request = request
        self._metadata = (*metadata, ("user-agent", USER_AGENT))
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._code: grpc.StatusCode | None = None
        self.trailing: tuple[tuple[str, str | bytes], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return LOOPBACK_PEER

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self.trailing = tuple(metadata)

    async def read(self) -> Any:
        """The request, once; then the end of the client's side."""
        request, self._request = self._request, grpc.aio.EOF
        return request

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Sequence[tuple[str, str | bytes]] = ()
    ) -> None:
        self._code = code
        raise LocalAbort(code, details, trailing_metadata)


def _failure(abort: LocalAbort, service: str) -> errors.DomainError:
    return call_error(abort.code, abort.details, abort.details_bin(), service)


class LocalCalls:
    """The edge-wrapped handlers of this process's services, by full method name (`/pkg.Service/Method`)."""

    def __init__(self, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
        self._handlers = dict(handlers)

    def serves(self, method: str) -> bool:
        return method in self._handlers

    async def unary(
        self, service: str, method: str, request: Any, metadata: Sequence[tuple[str, str]], seconds: float
    ) -> Any:
        """One unary call with `seconds` to answer; a refusal raised as its domain error, the deadline as
        DeadlineExceeded."""
        handler: Any = self._handlers[method].stream_unary  # the edge reads a unary request as a stream of one
        context = LocalContext(request, metadata, seconds)
        try:
            async with asyncio.timeout(seconds):
                return await handler((), context)
        except LocalAbort as abort:
            raise _failure(abort, service) from None
        except TimeoutError:
            raise errors.DeadlineExceeded(f"the {service} service did not answer in time; retry") from None

    async def stream(
        self, service: str, method: str, request: Any, metadata: Sequence[tuple[str, str]], seconds: float
    ) -> AsyncIterator[Any]:
        """A server stream; closing the iterator ends the call as a client's cancel does (CANCELLED at the edge,
        the servicer's generator closed). `seconds` is its deadline, checked before each message."""
        handler: Any = self._handlers[method].stream_stream
        context = LocalContext(request, metadata, seconds)
        try:
            async with contextlib.aclosing(handler((), context)) as responses:
                async for response in responses:
                    if context.expired():
                        raise errors.DeadlineExceeded(f"the {service} service's stream ran past its deadline")
                    yield response
        except LocalAbort as abort:
            raise _failure(abort, service) from None
