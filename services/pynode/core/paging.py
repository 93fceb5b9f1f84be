"""AIP-158 page sizes and opaque page tokens."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pynode.core.errors import FieldViolation, InvalidArgument

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
# Every number a token carries is a database key or offset: a signed 64-bit integer. A larger one was not
# issued here, and would overflow the driver (an OverflowError, or PostgreSQL's "out of range for bigint").
_INT64 = range(-(2**63), 2**63)


def page_size(requested: int, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE) -> int:
    """0 means the default; larger than the maximum is clamped (AIP-158)."""
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", [FieldViolation("page_size", "must be >= 0")])
    return min(requested or default, maximum)


def encode_token(position: dict[str, Any]) -> str:
    """An opaque token for the next page."""
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any] | None:
    """The position a token names; None for the first page."""
    if not token:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        value = None
    if not isinstance(value, dict):
        raise invalid_page_token()
    return value


def token_field(position: dict[str, Any], key: str, kind: type[T]) -> T:
    """`position[key]` when it is a `kind` (never a bool for int): a forged token is INVALID_ARGUMENT,
    never a TypeError deep in a query."""
    value = position.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid_page_token()
    if isinstance(value, int) and value not in _INT64:
        raise invalid_page_token()
    return value


def keyset(position: dict[str, Any]) -> tuple[datetime, uuid.UUID]:
    """A (time, id) position from a token (`t`, `i`): for lists ordered by when, then by id. A forged value (not
    a time with its zone, not a UUID, a time that leaves datetime's range once in UTC) is INVALID_ARGUMENT."""
    try:
        stamp = datetime.fromisoformat(token_field(position, "t", str))
        key = uuid.UUID(token_field(position, "i", str))
        if stamp.tzinfo is None:
            raise invalid_page_token()
        # In UTC here, as stored: `0001-01-01T00:00:00+14:00` is year 0 in UTC, which no datetime can hold.
        return stamp.astimezone(UTC), key
    except (ValueError, OverflowError):
        raise invalid_page_token() from None


def keyset_token(stamp: datetime, key: uuid.UUID) -> dict[str, Any]:
    """The position `keyset` reads back."""
    return {"t": stamp.isoformat(), "i": str(key)}


async def keyset_page(
    size: int,
    token: str,
    fetch: Callable[[tuple[datetime, uuid.UUID] | None, int], Awaitable[Sequence[T]]],
    at: Callable[[T], tuple[datetime, uuid.UUID]],
    scope: str = "",
    maximum: int = MAX_PAGE_SIZE,
) -> tuple[list[T], str]:
    """One page of a list ordered by (time, id), and the next page's token. `fetch(before, n)` reads up to n
    items after the position (None: from the start); one more than a page is asked for, so a full last page
    has no token that leads nowhere. `scope` names the filters the list was asked with: a token issued under
    other filters is refused rather than read as a position in a different list."""
    limit = page_size(size, maximum=maximum)
    position = decode_token(token)
    before = None
    if position is not None:
        if position.get("f", "") != scope:
            raise invalid_page_token()
        before = keyset(position)
    found = list(await fetch(before, limit + 1))
    if len(found) <= limit:
        return found, ""
    found = found[:limit]
    return found, encode_token({**keyset_token(*at(found[-1])), **({"f": scope} if scope else {})})


def offset_page(items: Sequence[T], size: int, token: str) -> tuple[list[T], str]:
    """One page of a list read in full (a few hundred items at most), and the next page's token."""
    limit = page_size(size)
    position = decode_token(token)
    offset = token_field(position, "o", int) if position else 0
    if offset < 0:
        raise invalid_page_token()
    end = offset + limit
    return list(items[offset:end]), encode_token({"o": end}) if end < len(items) else ""


def invalid_page_token() -> InvalidArgument:
    """The error for a page token this server did not issue."""
    return InvalidArgument(
        "page_token is not valid; pass a next_page_token from a previous response",
        [FieldViolation("page_token", "not a token this server issued", "BAD_PAGE_TOKEN")],
    )
