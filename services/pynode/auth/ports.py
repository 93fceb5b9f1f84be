"""What the auth service needs from the outside world."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from pynode.auth.domain import User


class UserRepository(Protocol):
    """Durable storage of accounts."""

    async def add(self, user: User) -> None:
        """Insert; raises AlreadyExists when the e-mail is taken."""

    async def by_email(self, email: str) -> User | None:
        """The account with this normalised e-mail."""

    async def by_id(self, user_id: uuid.UUID) -> User | None:
        """The account with this id."""

    async def save(self, user: User) -> None:
        """Write back a changed account."""

    async def page(self, after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[User]:
        """Accounts ordered by (created_at, id), strictly after `after`."""
