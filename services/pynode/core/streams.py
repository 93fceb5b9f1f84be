"""The event-stream port: append-only, bounded logs of events with ids, read from any point and followed live.

Where the event feed (`events.py`) is fire-and-forget, a stream keeps its last events: a reader that
was away resumes after the last id it saw and misses nothing, unless the events it missed were trimmed
(the log is bounded), which the reader is told. Ids are `<major>-<minor>` (Redis Streams' own shape)
and grow with every append, so any two compare with `event_key`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from pynode.core.errors import FieldViolation, InvalidArgument


@dataclass(frozen=True)
class StreamEvent:
    """One event of a stream: its id and its bytes."""

    id: str
    payload: bytes


@dataclass(frozen=True)
class Backlog:
    """Events read after a point: `trimmed` when some after that point are no longer kept."""

    events: list[StreamEvent]
    trimmed: bool


def event_key(event_id: str) -> tuple[int, int]:
    """An id as a sortable pair; InvalidArgument when it is not one."""
    major, sep, minor = event_id.partition("-")
    # Both halves are unsigned 64-bit numbers (Redis refuses anything larger with an error of its own).
    if not sep or not _is_u64(major) or not _is_u64(minor):
        raise InvalidArgument(
            "after is not an event id; pass the `id` of an event you received",
            [FieldViolation("after", "not an event id this server issued", "BAD_EVENT_ID")],
        )
    return int(major), int(minor)


def _is_u64(digits: str) -> bool:
    return digits.isascii() and digits.isdigit() and len(digits) <= 20 and int(digits) < 2**64


class EventStreams(Protocol):
    """Named, bounded event logs shared by every process of the mesh (Redis Streams, or in-process)."""

    async def append(self, stream: str, payload: bytes) -> str:
        """Add an event; returns its id. The oldest are trimmed beyond the configured length."""

    async def append_many(self, stream: str, payloads: list[bytes]) -> list[str]:
        """Add events in order, in one round trip; returns their ids."""

    async def last_id(self, stream: str) -> str:
        """The id of the newest event ("0-0" when there is none)."""

    async def read_after(self, stream: str, after: str, until: str | None = None) -> Backlog:
        """Events after `after` (and up to `until`, inclusive, when given), oldest first."""

    def follow(self, stream: str, after: str) -> AsyncIterator[list[StreamEvent]]:
        """Batches of events after `after`, as they are appended, until the consumer stops."""

    async def close(self) -> None:
        """Stop followers and release connections."""
