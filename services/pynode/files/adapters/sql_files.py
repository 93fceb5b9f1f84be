"""FileRepository on SQLAlchemy: the `files` table."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, String, Uuid, delete, func, select, tuple_
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from pynode.core.db import Base, Database, UTCDateTime
from pynode.core.errors import unavailable_on
from pynode.files.domain import StoredFile


class FileRow(Base):
    """The `files` table (migration files_0001): a row exists only once the bytes are stored."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_owner_id_created_at_id", "owner_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(36))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    declared_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(BigInteger())
    sha256: Mapped[str] = mapped_column(String(64))
    inline: Mapped[bool] = mapped_column(Boolean())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


_FIELDS = ("id", "owner_id", "filename", "content_type", "declared_type", "size", "sha256", "inline", "created_at")
_unavailable_on_outage = unavailable_on(OperationalError, what="the database")


def _domain(row: FileRow) -> StoredFile:
    return StoredFile(**{f: getattr(row, f) for f in _FIELDS})


class SqlFileRepository:
    """Files in the `files` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @_unavailable_on_outage
    async def add(self, file: StoredFile) -> None:
        async with self._db.session() as session, session.begin():
            session.add(FileRow(**{f: getattr(file, f) for f in _FIELDS}))

    @_unavailable_on_outage
    async def get(self, file_id: uuid.UUID) -> StoredFile | None:
        async with self._db.session() as session:
            row = await session.get(FileRow, file_id)
            return _domain(row) if row else None

    @_unavailable_on_outage
    async def page(self, owner_id: str, before: tuple[datetime, uuid.UUID] | None, limit: int) -> list[StoredFile]:
        query = (
            select(FileRow)
            .where(FileRow.owner_id == owner_id)
            .order_by(FileRow.created_at.desc(), FileRow.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(tuple_(FileRow.created_at, FileRow.id) < tuple_(*before))
        async with self._db.session() as session:
            return [_domain(r) for r in await session.scalars(query)]

    @_unavailable_on_outage
    async def delete(self, file_id: uuid.UUID) -> bool:
        async with self._db.session() as session, session.begin():
            result = await session.execute(delete(FileRow).where(FileRow.id == file_id))
            return bool(getattr(result, "rowcount", 0))

    @_unavailable_on_outage
    async def used_bytes(self, owner_id: str) -> int:
        async with self._db.session() as session:
            total = await session.scalar(
                select(func.coalesce(func.sum(FileRow.size), 0)).where(FileRow.owner_id == owner_id)
            )
            return int(total or 0)
