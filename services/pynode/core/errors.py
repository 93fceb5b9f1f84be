"""Domain errors: the only exceptions services raise on purpose.

The gRPC edge maps each one to a google.rpc.Status with one ErrorInfo and the
detail types that apply (AIP-193). Service code never imports grpc.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class FieldViolation:
    """One broken rule of one request field."""

    field: str
    description: str
    reason: str = "INVALID_FIELD"


@dataclass(frozen=True)
class QuotaViolation:
    """One exhausted quota (the subject names what was limited)."""

    subject: str
    description: str


class DomainError(Exception):
    """Base of every deliberate error; `reason` is UPPER_SNAKE for ErrorInfo."""

    reason = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata = dict(metadata or {})


class InvalidArgument(DomainError):
    """The request is malformed; `violations` say which fields and why."""

    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        violations: list[FieldViolation] | None = None,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
    ):
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations = list(violations or [])


class FailedPrecondition(DomainError):
    """The request is valid but the system is not in a state to do it."""

    reason = "FAILED_PRECONDITION"


class NotFound(DomainError):
    """The resource does not exist or the caller may not see it."""

    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    """The resource the caller tried to create exists already."""

    reason = "ALREADY_EXISTS"


class Unauthenticated(DomainError):
    """Credentials are missing, invalid or expired."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    """The caller is known but may not do this."""

    reason = "PERMISSION_DENIED"


class QuotaExceeded(DomainError):
    """A rate limit or lockout refused the call; retry after `retry_after` seconds."""

    reason = "RATE_LIMITED"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        violations: list[QuotaViolation] | None = None,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
    ):
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = max(0.0, retry_after)
        self.violations = list(violations or [])


class Unavailable(DomainError):
    """A dependency is down; the caller may retry."""

    reason = "UNAVAILABLE"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
    ):
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after


class DeadlineExceeded(DomainError):
    """The caller's deadline passed before the work (or a call it needed) could finish."""

    reason = "DEADLINE_EXCEEDED"


class Internal(DomainError):
    """A dependency failed in a way the caller cannot fix (its details stay in the log)."""

    reason = "INTERNAL"


class Unimplemented(DomainError):
    """The RPC is declared but not served (by this build, or by this process)."""

    reason = "NOT_IMPLEMENTED"


def unavailable_on(
    *outages: type[BaseException], what: str
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Decorate an adapter method so a lost connection to `what` becomes UNAVAILABLE (retry
    later) instead of an internal error."""

    def decorate(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(method)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await method(*args, **kwargs)
            except outages:
                raise Unavailable(f"{what} is unreachable; retry shortly", retry_after=1.0) from None

        return wrapper

    return decorate
