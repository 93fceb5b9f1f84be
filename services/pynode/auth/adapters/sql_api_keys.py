"""ApiKeyRepository on SQLAlchemy: the `api_keys` table (PostgreSQL or SQLite)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Uuid, or_, select, tuple_, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from pynode.auth.domain import ApiKey
from pynode.core.db import Base, Database, UTCDateTime
from pynode.core.errors import unavailable_on


class ApiKeyRow(Base):
    """The `api_keys` table (migration auth_0003): only the SHA-256 of each secret."""

    __tablename__ = "api_keys"
    __table_args__ = (
        Index("ix_api_keys_user_id_created_at_id", "user_id", "created_at", "id"),  # listed in this order
        CheckConstraint("scope IN ('full', 'ai', 'read_only')", name="scope_known"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


_unavailable_on_outage = unavailable_on(OperationalError, what="the database")
_FIELDS = ("id", "user_id", "name", "scope", "secret_hash", "created_at", "expires_at", "revoked_at", "last_used_at")


def _to_domain(row: ApiKeyRow) -> ApiKey:
    return ApiKey(**{f: getattr(row, f) for f in _FIELDS})


class SqlApiKeyRepository:
    """Personal API keys in the `api_keys` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @_unavailable_on_outage
    async def add(self, key: ApiKey) -> None:
        async with self._db.session() as session, session.begin():
            session.add(ApiKeyRow(**{f: getattr(key, f) for f in _FIELDS}))

    @_unavailable_on_outage
    async def get(self, key_id: uuid.UUID) -> ApiKey | None:
        async with self._db.session() as session:
            row = await session.get(ApiKeyRow, key_id)
            return None if row is None else _to_domain(row)

    @_unavailable_on_outage
    async def page(
        self, user_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int, active_at: datetime | None
    ) -> list[ApiKey]:
        query = (
            select(ApiKeyRow)
            .where(ApiKeyRow.user_id == user_id)
            .order_by(ApiKeyRow.created_at.desc(), ApiKeyRow.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(tuple_(ApiKeyRow.created_at, ApiKeyRow.id) < tuple_(*before))
        if active_at is not None:
            query = query.where(
                ApiKeyRow.revoked_at.is_(None), or_(ApiKeyRow.expires_at.is_(None), ApiKeyRow.expires_at > active_at)
            )
        async with self._db.session() as session:
            return [_to_domain(r) for r in await session.scalars(query)]

    @_unavailable_on_outage
    async def revoke(self, key_id: uuid.UUID, at: datetime) -> ApiKey | None:
        async with self._db.session() as session, session.begin():
            await session.execute(
                update(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None)).values(revoked_at=at)
            )
            row = await session.get(ApiKeyRow, key_id)
            return None if row is None else _to_domain(row)

    @_unavailable_on_outage
    async def touch(self, key_id: uuid.UUID, at: datetime) -> None:
        async with self._db.session() as session, session.begin():
            await session.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=at))

    @_unavailable_on_outage
    async def ids_of(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        query = select(ApiKeyRow.id).where(ApiKeyRow.user_id == user_id, ApiKeyRow.revoked_at.is_(None))
        async with self._db.session() as session:
            return list(await session.scalars(query))
