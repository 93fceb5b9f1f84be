"""UserRepository on SQLAlchemy (PostgreSQL or SQLite)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Index, String, Uuid, select, tuple_
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from pynode.auth.domain import Profile, User
from pynode.core.db import Base, Database, UTCDateTime
from pynode.core.errors import AlreadyExists, unavailable_on


class UserRow(Base):
    """The `users` table (migration 0001)."""

    __tablename__ = "users"
    __table_args__ = (
        Index("ix_users_created_at_id", "created_at", "id"),  # ListUsers pages in this order
        CheckConstraint("role IN ('user', 'admin')", name="role_known"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16), default="user")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# A lost database connection is UNAVAILABLE with a retry delay, never INTERNAL.
_unavailable_on_outage = unavailable_on(OperationalError, what="the database")


_FIELDS = ("id", "email", "password_hash", "display_name", "role", "disabled", "created_at", "updated_at")


def _to_domain(row: UserRow) -> User:
    return User(**{f: getattr(row, f) for f in _FIELDS})


class SqlUserRepository:
    """Accounts in the `users` table. A lost database connection surfaces as UNAVAILABLE."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # SQLite has no row locks and one process: this serialises the last-admin check there.
        self._admin_changes = asyncio.Lock()

    @_unavailable_on_outage
    async def add(self, user: User) -> None:
        try:
            async with self._db.session() as session, session.begin():
                session.add(UserRow(**{f: getattr(user, f) for f in _FIELDS}))
        except IntegrityError:
            raise AlreadyExists(
                "an account with this e-mail cannot be created; sign in instead", reason="EMAIL_UNAVAILABLE"
            ) from None

    @_unavailable_on_outage
    async def by_email(self, email: str) -> User | None:
        async with self._db.session() as session:
            row = await session.scalar(select(UserRow).where(UserRow.email == email))
            return _to_domain(row) if row else None

    @_unavailable_on_outage
    async def by_id(self, user_id: uuid.UUID) -> User | None:
        async with self._db.session() as session:
            row = await session.get(UserRow, user_id)
            return _to_domain(row) if row else None

    async def profile(self, user_id: str) -> Profile | None:
        try:
            parsed = uuid.UUID(user_id)
        except ValueError:
            return None
        user = await self.by_id(parsed)
        return Profile.of(user) if user is not None else None

    @_unavailable_on_outage
    async def save(self, user: User) -> None:
        async with self._db.session() as session, session.begin():
            row = await session.get(UserRow, user.id, with_for_update=True)
            if row is None:
                return
            for f in _FIELDS[1:]:
                setattr(row, f, getattr(user, f))

    @_unavailable_on_outage
    async def save_keeping_an_admin(self, user: User) -> bool:
        # The enabled admins' rows are locked (in id order, so two of these never deadlock) before
        # they are counted: of two admins demoting each other at once, the second sees one admin left.
        async with self._admin_changes, self._db.session() as session, session.begin():
            admins = list(
                await session.scalars(
                    select(UserRow.id)
                    .where(UserRow.role == "admin", UserRow.disabled.is_(False))
                    .order_by(UserRow.id)
                    .with_for_update()
                )
            )
            stays_admin = user.role == "admin" and not user.disabled
            if not stays_admin and admins == [user.id]:
                return False
            row = await session.get(UserRow, user.id, with_for_update=True)
            if row is None:
                return True
            for f in _FIELDS[1:]:
                setattr(row, f, getattr(user, f))
        return True

    @_unavailable_on_outage
    async def page(self, after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[User]:
        query = select(UserRow).order_by(UserRow.created_at, UserRow.id).limit(limit)
        if after is not None:
            query = query.where(tuple_(UserRow.created_at, UserRow.id) > tuple_(*after))
        async with self._db.session() as session:
            return [_to_domain(r) for r in await session.scalars(query)]
