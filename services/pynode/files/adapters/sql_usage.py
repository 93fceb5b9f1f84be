"""The storage quota on SQLAlchemy: each owner's usage row, and the reservations of uploads in flight.

`storage_usage.used_bytes` is the owner's stored files plus every live reservation. Bytes are only ever added
by a conditional `UPDATE ... SET used_bytes = used_bytes + :n WHERE owner_id = :o AND used_bytes + :n <= :quota`:
PostgreSQL takes the row's lock and re-checks the condition on the newest row when a concurrent update
commits first; SQLite serializes every write. Either way two processes cannot both take the last bytes. A
reservation row records what an upload holds (a stream's bytes as they arrive, a session's declared or
received bytes) and when it lapses, so a crashed process's holdings return to the owner at the sweep.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Index, String, Uuid, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from pynode.core.db import Base, UTCDateTime


class UsageRow(Base):
    """The `storage_usage` table (migration files_0003): bytes stored and reserved, per owner."""

    __tablename__ = "storage_usage"

    owner_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    used_bytes: Mapped[int] = mapped_column(BigInteger())


class ReservationRow(Base):
    """The `storage_reservations` table (migration files_0003): what an unfinished upload holds, until when."""

    __tablename__ = "storage_reservations"
    __table_args__ = (Index("ix_storage_reservations_expires_at", "expires_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(36))
    bytes: Mapped[int] = mapped_column(BigInteger())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


async def charge(session: AsyncSession, owner_id: str, amount: int, quota: int) -> bool:
    """Add `amount` to the owner's usage if it stays within `quota` (in the caller's transaction); whether it
    did. The conditional UPDATE is the arbiter (see the module's docstring)."""
    grant = (
        update(UsageRow)
        .where(UsageRow.owner_id == owner_id, UsageRow.used_bytes + amount <= quota)
        .values(used_bytes=UsageRow.used_bytes + amount)
    )
    if (await session.execute(grant)).rowcount:  # type: ignore[attr-defined]
        return True
    if await session.scalar(select(UsageRow.owner_id).where(UsageRow.owner_id == owner_id)) is not None:
        return False  # the row is there: over quota
    # The owner's first upload: the row, at zero (a concurrent first upload may insert it first), then again.
    dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        dialect_insert(UsageRow)
        .values(owner_id=owner_id, used_bytes=0)
        .on_conflict_do_nothing(index_elements=["owner_id"])
    )
    return bool((await session.execute(grant)).rowcount)  # type: ignore[attr-defined]


async def credit(session: AsyncSession, owner_id: str, amount: int) -> None:
    """Give `amount` back to the owner (a deleted file, a released reservation)."""
    if amount:
        await session.execute(
            update(UsageRow).where(UsageRow.owner_id == owner_id).values(used_bytes=UsageRow.used_bytes - amount)
        )


async def take_reservation(session: AsyncSession, reservation_id: uuid.UUID, before: datetime | None = None) -> int:
    """Remove a reservation (only if it lapsed before `before`, when given) and return its bytes to its owner's
    usage; the bytes it held (0: there was none)."""
    query = delete(ReservationRow).where(ReservationRow.id == reservation_id)
    if before is not None:
        query = query.where(ReservationRow.expires_at < before)
    taken = (await session.execute(query.returning(ReservationRow.owner_id, ReservationRow.bytes))).first()
    if taken is None:
        return 0
    owner_id, held = taken
    await credit(session, owner_id, held)
    return int(held)
