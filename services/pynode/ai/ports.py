"""What the AI router needs from the outside world: the usage ledger, and the files service for pictures."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pynode.ai.domain import Generation, UsageTotal


class UsageLedger(Protocol):
    """One row per generation, summed on request."""

    async def add(self, generation: Generation) -> None:
        """Record a finished, cancelled or failed generation."""

    async def totals(
        self, user_id: str | None, start: datetime | None, end: datetime | None, by: str
    ) -> list[UsageTotal]:
        """Sums per `by` ("model": the model that answered, or "user_id") over [start, end), for one user or
        (None) every user."""


class PictureFiles(Protocol):
    """The files service, read for a user (a picture a message names by file id)."""

    async def read(self, file_id: str, user_id: str, limit: int) -> bytes:
        """The file's bytes if `user_id` may read it (NotFound otherwise); InvalidArgument past `limit` bytes."""
