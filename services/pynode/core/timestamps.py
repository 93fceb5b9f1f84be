"""`google.protobuf.Timestamp` from the domain's timezone-aware datetimes, for every servicer."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(value: datetime) -> Timestamp:
    """The protobuf form of `value`."""
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
