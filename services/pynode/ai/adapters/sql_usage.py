"""UsageLedger on SQLAlchemy: the `ai_generations` table."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String, case, func, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from pynode.ai.domain import CANCELLED, ERROR, Generation, UsageTotal
from pynode.core.db import Base, Database, UTCDateTime, utcnow
from pynode.core.errors import unavailable_on


class GenerationRow(Base):
    """The `ai_generations` table (migration ai_0001): one row per generation, whatever its end."""

    __tablename__ = "ai_generations"
    __table_args__ = (
        Index("ix_ai_generations_user_id_created_at", "user_id", "created_at"),
        Index("ix_ai_generations_created_at", "created_at"),
        Index("ix_ai_generations_api_key_id_created_at", "api_key_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36))
    model: Mapped[str] = mapped_column(String(200))
    deployment: Mapped[str] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(BigInteger())
    completion_tokens: Mapped[int] = mapped_column(BigInteger())
    finish_reason: Mapped[str] = mapped_column(String(16))
    cached: Mapped[bool] = mapped_column(Boolean())
    time_to_first_token_ms: Mapped[float | None] = mapped_column(Float(), nullable=True)
    duration_ms: Mapped[float] = mapped_column(Float())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    api_key_id: Mapped[str] = mapped_column(String(36), server_default="")  # migration ai_0002


_unavailable_on_outage = unavailable_on(OperationalError, what="the database")


class SqlUsageLedger:
    """Generations in `ai_generations` (a BatchLedger: the service writes through `ledger.BufferedLedger`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @_unavailable_on_outage
    async def add_many(self, generations: list[Generation]) -> None:
        """One INSERT for many rows (Core, not the ORM: this runs for every generation)."""
        rows = [
            {
                "user_id": g.user_id[:36],
                "model": g.model[:200],
                "deployment": g.deployment[:200],
                "prompt_tokens": g.prompt_tokens,
                "completion_tokens": g.completion_tokens,
                "finish_reason": g.finish_reason,
                "cached": g.cached,
                "time_to_first_token_ms": g.time_to_first_token_ms,
                "duration_ms": g.duration_ms,
                "created_at": g.created_at or utcnow(),
                "api_key_id": g.api_key_id[:36],
            }
            for g in generations
        ]
        async with self._db.session() as session, session.begin():
            await session.execute(insert(GenerationRow), rows)

    @_unavailable_on_outage
    async def totals(
        self, user_id: str | None, start: datetime | None, end: datetime | None, by: str
    ) -> list[UsageTotal]:
        # Per model means per model that answered (the deployment), not the alias asked for: that is what costs.
        group = {"model": GenerationRow.deployment, "api_key_id": GenerationRow.api_key_id}.get(
            by, GenerationRow.user_id
        )
        unfinished = case((GenerationRow.finish_reason.in_((CANCELLED, ERROR)), 1), else_=0)
        query = select(
            group,
            func.count(),
            func.coalesce(func.sum(GenerationRow.prompt_tokens), 0),
            func.coalesce(func.sum(GenerationRow.completion_tokens), 0),
            func.coalesce(func.sum(case((GenerationRow.cached, 1), else_=0)), 0),
            func.coalesce(func.sum(unfinished), 0),
        ).group_by(group)
        if user_id is not None:
            query = query.where(GenerationRow.user_id == str(uuid.UUID(user_id)))
        if start is not None:
            query = query.where(GenerationRow.created_at >= start)
        if end is not None:
            query = query.where(GenerationRow.created_at < end)
        async with self._db.session() as session:
            rows = (await session.execute(query)).all()
        totals = [UsageTotal(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows]
        return sorted(totals, key=lambda t: (-(t.prompt_tokens + t.completion_tokens), t.key))
