"""Domain errors (the router's statuses, mapped by the peer client) as OpenAI's JSON error and HTTP status.

OpenAI's shape is `{"error": {"message", "type", "param", "code"}}`; clients pick their exception class from
the HTTP status alone (the `openai` package: 400 BadRequestError, 401 AuthenticationError, 403
PermissionDeniedError, 404 NotFoundError, 413/422 and the rest APIStatusError, 429 RateLimitError, 5xx
InternalServerError), and honour `Retry-After` on 429 and 503.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pynode.core import errors
from pynode.door.translate import openai_param

_STATUS: list[tuple[type[errors.DomainError], int, str]] = [
    (errors.InvalidArgument, 400, "invalid_request_error"),
    (errors.FailedPrecondition, 400, "invalid_request_error"),
    (errors.Unauthenticated, 401, "invalid_request_error"),
    (errors.PermissionDenied, 403, "permission_error"),
    (errors.NotFound, 404, "invalid_request_error"),
    (errors.AlreadyExists, 409, "invalid_request_error"),
    (errors.QuotaExceeded, 429, "rate_limit_error"),
    (errors.Unimplemented, 501, "api_error"),
    (errors.Unavailable, 503, "api_error"),
    (errors.DeadlineExceeded, 504, "api_error"),
]
INTERNAL_MESSAGE = "internal error; the server logged it"


@dataclass(frozen=True)
class HttpError:
    """One error answer: its HTTP status, OpenAI's JSON body and headers (Retry-After)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def http_error(error: errors.DomainError, *, model_param: bool = True) -> HttpError:
    """The answer for a domain error; `model_param`: a NOT_FOUND names the request's model."""
    status, kind = next(((s, k) for c, s, k in _STATUS if isinstance(error, c)), (500, "api_error"))
    if status == 500:
        return HttpError(500, error_body(INTERNAL_MESSAGE, "api_error", code="internal_error"))
    param: str | None = None
    code = error.reason.lower()
    message = error.message
    if isinstance(error, errors.InvalidArgument) and error.violations:
        param = openai_param(error.violations[0].field)
        described = error.violations[0].description
        if described != message:  # the router's summary names proto fields; say it in the client's terms
            message = f"Invalid '{param}': {described}."
    if isinstance(error, errors.NotFound) and model_param:
        param, code = "model", "model_not_found"
    if isinstance(error, errors.Unauthenticated):
        code = "invalid_api_key"
    headers = {}
    retry = getattr(error, "retry_after", None)
    if retry is not None and status in (429, 503):
        headers["Retry-After"] = str(max(1, math.ceil(retry)))
    return HttpError(status, error_body(message, kind, param, code), headers)
