"""Answers calls to services of the mesh that this process does not run, instead of "Method not found!"."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2

from pynode.core.status import ERROR_DOMAIN, pack


class ServedElsewhere(grpc.GenericRpcHandler):
    """Consulted after every mounted service: a method of a known service that is not mounted here gets
    UNIMPLEMENTED naming the service and what this process runs (reason SERVICE_NOT_IN_THIS_PROCESS)."""

    def __init__(self, absent: Iterable[str], present: Iterable[str]) -> None:
        self._absent = frozenset(absent)
        self._present = ", ".join(sorted(present)) or "nothing"

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = str(handler_call_details.method)
        service = method.lstrip("/").partition("/")[0]
        if service not in self._absent:
            return None  # grpc answers UNIMPLEMENTED for names it has never heard of
        message = (
            f"{service} is not run by this process (it runs {self._present}); "
            "call the process that runs it, or start this one without --only"
        )
        info = error_details_pb2.ErrorInfo(
            reason="SERVICE_NOT_IN_THIS_PROCESS", domain=ERROR_DOMAIN, metadata={"service": service}
        )
        rich = status_pb2.Status(code=code_pb2.UNIMPLEMENTED, message=message, details=[pack(info)])

        async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                message,
                trailing_metadata=(("grpc-status-details-bin", rich.SerializeToString()),),
            )

        # Bytes in, nothing out: the request is never parsed. Streaming callers get the same answer.
        return grpc.unary_unary_rpc_method_handler(refuse)
