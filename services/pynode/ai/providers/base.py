"""What every provider offers the router, and how provider failures become statuses.

Provider failures map to statuses once, here: 429 is RESOURCE_EXHAUSTED with RetryInfo (from Retry-After
when present), 5xx and connection errors are UNAVAILABLE, an unknown model is NOT_FOUND, a prompt longer
than the model's context is INVALID_ARGUMENT with a field violation. Messages name the provider and the
status, never the provider's response body (it may echo a key) nor a URL's credentials.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from pynode.ai.domain import Chunk, Embeddings, ModelInfo, Prompt
from pynode.core.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    QuotaViolation,
    Unavailable,
)

DEFAULT_RETRY_SECONDS = 5.0
_CONTEXT_WORDS = ("context length", "context_length", "maximum context", "too many tokens", "context window")


class Provider(Protocol):
    """A source of models: lists them and streams their answers."""

    name: str  # the prefix of its model ids: `name/model`
    kind: str  # builtin, ollama or openai

    async def models(self) -> list[ModelInfo]:
        """The models it offers now; never raises (an unreachable provider lists itself unavailable)."""

    def stream(self, prompt: Prompt) -> AsyncIterator[Chunk]:
        """Deltas, then exactly one Finished. Raises DomainError (mapped below) on failure. Closing the
        iterator closes the upstream request; the router bounds the wait for the first chunk and the caller's
        deadline cancels the rest."""

    async def embed(self, model: str, inputs: list[str], dimensions: int) -> Embeddings:
        """One vector per input, in order (`dimensions` 0: the model's own size). Raises DomainError."""

    async def close(self) -> None:
        """Release connections."""


def public_url(url: str) -> str:
    """A URL fit for messages and logs: without user, password, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def retry_after_seconds(header: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def http_failure(provider: str, model: str, status: int, body: str, retry_after: str | None) -> DomainError:
    """The status for an HTTP error answer of a provider."""
    if status == 429:
        wait = retry_after_seconds(retry_after)
        return QuotaExceeded(
            f"provider {provider} is rate limiting requests; retry later",
            retry_after=DEFAULT_RETRY_SECONDS if wait is None else wait,
            reason="PROVIDER_RATE_LIMITED",
            violations=[QuotaViolation(f"provider:{provider}", "the provider's own rate limit")],
        )
    lowered = body.lower()
    if status in (400, 413, 422) and any(word in lowered for word in _CONTEXT_WORDS):
        return InvalidArgument(
            f"the prompt is longer than {provider}/{model} accepts",
            [FieldViolation("messages", "longer than the model's context window", "CONTEXT_TOO_LONG")],
            reason="CONTEXT_TOO_LONG",
        )
    if status == 404 or (status == 400 and "model" in lowered and "not found" in lowered):
        return NotFound(f"provider {provider} has no model {model!r}", reason="MODEL_NOT_FOUND")
    if status in (400, 422):
        return InvalidArgument(f"provider {provider} refused the request (HTTP {status})", reason="PROVIDER_REFUSED")
    return Unavailable(
        f"provider {provider} failed (HTTP {status})",
        retry_after=1.0,
        reason="PROVIDER_UNAVAILABLE",
        metadata={"provider": provider, "http_status": str(status)},
    )


def connection_failure(provider: str, exc: BaseException) -> Unavailable:
    """The status for a provider that cannot be reached or cut the stream."""
    import httpx  # here: providers import this module before they need the client

    # The ollama client raises a bare ConnectionError when it cannot connect.
    if isinstance(exc, httpx.ConnectError | ConnectionRefusedError) or type(exc) is ConnectionError:
        said = "cannot be reached (nothing answers at its address)"
    elif isinstance(exc, httpx.TimeoutException | TimeoutError):
        said = "did not answer in time"
    else:
        said = "ended the connection early"
    return Unavailable(
        f"provider {provider} {said}",
        retry_after=1.0,
        reason="PROVIDER_UNAVAILABLE",
        metadata={"provider": provider, "failure": type(exc).__name__},  # the exception's kind for operators
    )
