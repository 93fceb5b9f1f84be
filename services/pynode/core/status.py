"""Maps domain errors to google.rpc.Status with exactly one ErrorInfo plus the details that apply."""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from pynode.core import errors

ERROR_DOMAIN = "devpynode.dev"

_CODES: list[tuple[type[errors.DomainError], grpc.StatusCode]] = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
]


def grpc_code(error: errors.DomainError) -> grpc.StatusCode:
    """The status code for a domain error."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.UNKNOWN


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    whole = math.ceil(max(seconds, 0.0) * 1000) / 1000
    delay = duration_pb2.Duration(seconds=int(whole), nanos=round((whole % 1) * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def to_status(error: errors.DomainError, *, code: grpc.StatusCode | None = None) -> status_pb2.Status:
    """Build the rich status for a domain error."""
    code = code or grpc_code(error)
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata))]
    if isinstance(error, errors.InvalidArgument) and error.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description, reason=v.reason
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    if isinstance(error, errors.QuotaExceeded):
        if error.violations:
            details.append(
                _pack(
                    error_details_pb2.QuotaFailure(
                        violations=[
                            error_details_pb2.QuotaFailure.Violation(subject=v.subject, description=v.description)
                            for v in error.violations
                        ]
                    )
                )
            )
        details.append(_pack(_retry_info(error.retry_after)))
    if isinstance(error, errors.Unavailable) and error.retry_after is not None:
        details.append(_pack(_retry_info(error.retry_after)))
    return status_pb2.Status(code=code.value[0], message=error.message, details=details)


def internal_status() -> status_pb2.Status:
    """The status for an unexpected failure: nothing about the internals."""
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN)
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message="internal error; the server logged it with this call's request id",
        details=[_pack(info)],
    )


def unimplemented_status(method: str) -> status_pb2.Status:
    """The status for an RPC that is declared but not built yet."""
    info = error_details_pb2.ErrorInfo(reason="NOT_IMPLEMENTED", domain=ERROR_DOMAIN, metadata={"method": method})
    return status_pb2.Status(
        code=code_pb2.UNIMPLEMENTED, message=f"{method} is not implemented yet", details=[_pack(info)]
    )
