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
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.Internal, grpc.StatusCode.INTERNAL),
    (errors.Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
]


def grpc_code(error: errors.DomainError) -> grpc.StatusCode:
    """The status code for a domain error."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.UNKNOWN


def pack(message: object) -> any_pb2.Any:
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
    details = [pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata))]
    if isinstance(error, errors.InvalidArgument) and error.violations:
        details.append(
            pack(
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
                pack(
                    error_details_pb2.QuotaFailure(
                        violations=[
                            error_details_pb2.QuotaFailure.Violation(subject=v.subject, description=v.description)
                            for v in error.violations
                        ]
                    )
                )
            )
        details.append(pack(_retry_info(error.retry_after)))
    if isinstance(error, errors.Unavailable) and error.retry_after is not None:
        details.append(pack(_retry_info(error.retry_after)))
    return status_pb2.Status(code=code.value[0], message=error.message, details=details)


def internal_status() -> status_pb2.Status:
    """The status for an unexpected failure: nothing about the internals."""
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN)
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message="internal error; the server logged it with this call's request id",
        details=[pack(info)],
    )


def unimplemented_status(method: str) -> status_pb2.Status:
    """The status for an RPC that is declared but not built yet."""
    info = error_details_pb2.ErrorInfo(reason="NOT_IMPLEMENTED", domain=ERROR_DOMAIN, metadata={"method": method})
    return status_pb2.Status(
        code=code_pb2.UNIMPLEMENTED, message=f"{method} is not implemented yet", details=[pack(info)]
    )


def _seconds(retry: error_details_pb2.RetryInfo) -> float:
    return float(retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9)


def from_status(code: grpc.StatusCode, message: str, details_bin: bytes | None) -> errors.DomainError:
    """The domain error a peer's failed call stands for, its details kept (the inverse of `to_status`), so a
    peer's refusal reaches our caller with the same status, reason, field violations and retry delay."""
    rich = status_pb2.Status.FromString(details_bin) if details_bin else status_pb2.Status()
    info, retry = error_details_pb2.ErrorInfo(), None
    violations: list[errors.FieldViolation] = []
    quota: list[errors.QuotaViolation] = []
    for packed in rich.details:
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            packed.Unpack(info)
        elif packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            packed.Unpack(retry)
        elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            violations += [errors.FieldViolation(v.field, v.description, v.reason) for v in bad.field_violations]
        elif packed.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            failure = error_details_pb2.QuotaFailure()
            packed.Unpack(failure)
            quota += [errors.QuotaViolation(v.subject, v.description) for v in failure.violations]
    reason = info.reason or None
    metadata = dict(info.metadata)
    delay = _seconds(retry) if retry is not None else None
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return errors.InvalidArgument(message, violations, reason=reason, metadata=metadata)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return errors.QuotaExceeded(
            message, retry_after=delay or 1.0, violations=quota, reason=reason, metadata=metadata
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        return errors.Unavailable(message, retry_after=delay, reason=reason, metadata=metadata)
    kind = next((k for k, c in _CODES if c == code), None)
    if kind is None or kind is errors.Internal:
        # UNKNOWN, DATA_LOSS, INTERNAL and the like: the peer's words are not ours to show.
        return errors.Internal("a dependency failed; the server logged it with this call's request id")
    return kind(message, reason=reason, metadata=metadata)
