"""AuditStore on SQLAlchemy: the `audit_events` table, appended to and read newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, delete, or_, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from pynode.auth.domain import AuditEvent
from pynode.core.db import Base, Database, UTCDateTime
from pynode.core.errors import unavailable_on


class AuditRow(Base):
    """The `audit_events` table (migration auth_0002; updates are refused by a trigger)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_subject_id", "subject", "id"),
        Index("ix_audit_events_actor_id", "actor", "id"),
        Index("ix_audit_events_kind_id", "kind", "id"),
        Index("ix_audit_events_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(80))
    subject: Mapped[str] = mapped_column(String(36))
    address: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSON())


_unavailable_on_outage = unavailable_on(OperationalError, what="the database")


class SqlAuditStore:
    """Security events in the `audit_events` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @_unavailable_on_outage
    async def add(self, event: AuditEvent) -> None:
        async with self._db.session() as session, session.begin():
            session.add(
                AuditRow(
                    at=event.at,
                    kind=event.kind,
                    actor=event.actor[:80],
                    subject=event.subject[:36],
                    address=event.address[:64],
                    request_id=event.request_id[:128],
                    details=dict(event.details),
                )
            )

    @_unavailable_on_outage
    async def page(self, before: int | None, limit: int, user_id: str, kind: str) -> list[AuditEvent]:
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if before is not None:
            query = query.where(AuditRow.id < before)
        if user_id:
            query = query.where(or_(AuditRow.subject == user_id, AuditRow.actor == user_id))
        if kind:
            query = query.where(AuditRow.kind == kind)
        async with self._db.session() as session:
            return [
                AuditEvent(r.id, r.at, r.kind, r.actor, r.subject, r.address, r.request_id, dict(r.details))
                for r in await session.scalars(query)
            ]

    @_unavailable_on_outage
    async def purge_older_than(self, cutoff: datetime) -> int:
        async with self._db.session() as session, session.begin():
            result = await session.execute(delete(AuditRow).where(AuditRow.at < cutoff))
            return int(getattr(result, "rowcount", 0) or 0)
