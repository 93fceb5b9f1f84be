"""What the AI router needs from the outside world: the usage ledger."""

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
