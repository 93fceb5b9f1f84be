"""IdentityRepository on SQLAlchemy (PostgreSQL or SQLite)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Uuid, delete, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from pynode.auth.adapters.sql_users import UserRow
from pynode.auth.domain import LinkedIdentity
from pynode.core.db import Base, Database, UTCDateTime
from pynode.core.errors import AlreadyExists, unavailable_on


class IdentityRow(Base):
    """The `oidc_identities` table (migration 0003)."""

    __tablename__ = "oidc_identities"

    issuer: Mapped[str] = mapped_column(String(512), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(254))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime] = mapped_column(UTCDateTime())


_unavailable_on_outage = unavailable_on(OperationalError, what="the database")
_FIELDS = ("issuer", "subject", "user_id", "provider", "email", "linked_at", "last_login_at")


def _to_domain(row: IdentityRow) -> LinkedIdentity:
    return LinkedIdentity(**{f: getattr(row, f) for f in _FIELDS})


class SqlIdentityRepository:
    """Identities in the `oidc_identities` table. A lost database connection surfaces as UNAVAILABLE."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._unlinks = asyncio.Lock()  # SQLite has no row locks: serialises the last-way-in check there

    @_unavailable_on_outage
    async def get(self, issuer: str, subject: str) -> LinkedIdentity | None:
        async with self._db.session() as session:
            row = await session.get(IdentityRow, (issuer, subject))
            return _to_domain(row) if row else None

    @_unavailable_on_outage
    async def add(self, identity: LinkedIdentity) -> None:
        try:
            async with self._db.session() as session, session.begin():
                session.add(IdentityRow(**{f: getattr(identity, f) for f in _FIELDS}))
        except IntegrityError:
            raise AlreadyExists(
                "this provider identity is linked to an account already", reason="OIDC_IDENTITY_IN_USE"
            ) from None

    @_unavailable_on_outage
    async def for_user(self, user_id: uuid.UUID) -> list[LinkedIdentity]:
        query = select(IdentityRow).where(IdentityRow.user_id == user_id).order_by(IdentityRow.linked_at)
        async with self._db.session() as session:
            return [_to_domain(r) for r in await session.scalars(query)]

    @_unavailable_on_outage
    async def touch(self, issuer: str, subject: str, email: str, at: datetime) -> None:
        async with self._db.session() as session, session.begin():
            await session.execute(
                update(IdentityRow)
                .where(IdentityRow.issuer == issuer, IdentityRow.subject == subject)
                .values(email=email, last_login_at=at)
            )

    @_unavailable_on_outage
    async def remove_keeping_one_way_in(self, user_id: uuid.UUID, issuer: str, subject: str) -> bool | None:
        # The account's row is locked first, so two unlinks of its last two identities run one after the other
        # and the second sees one left.
        async with self._unlinks, self._db.session() as session, session.begin():
            user = await session.get(UserRow, user_id, with_for_update=True)
            if user is None:
                return None
            row = await session.get(IdentityRow, (issuer, subject))
            if row is None or row.user_id != user_id:
                return None
            count = await session.scalar(
                select(func.count()).select_from(IdentityRow).where(IdentityRow.user_id == user_id)
            )
            if not user.password_hash and (count or 0) <= 1:
                return False
            await session.execute(
                delete(IdentityRow).where(IdentityRow.issuer == issuer, IdentityRow.subject == subject)
            )
            return True
