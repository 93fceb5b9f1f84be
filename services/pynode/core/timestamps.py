"""The domain's clock (timezone-aware UTC datetimes) and their `google.protobuf.Timestamp` form for servicers."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def utcnow() -> datetime:
    """Now, timezone-aware (never the naive, deprecated `datetime.utcnow()`)."""
    return datetime.now(UTC)


def timestamp(value: datetime) -> Timestamp:
    """The protobuf form of `value`."""
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
