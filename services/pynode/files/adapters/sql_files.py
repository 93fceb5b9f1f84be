"""FileRepository on SQLAlchemy: the `files` table, with the owner's usage changed in the same transaction
(sql_usage.py keeps the quota)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, String, Uuid, delete, func, select, tuple_, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from pynode.core.db import Base, Database, UTCDateTime
from pynode.core.errors import unavailable_on
from pynode.files.adapters.sql_usage import ReservationRow, UsageRow, charge, credit, take_reservation
from pynode.files.domain import ACTIVE, StoredFile, UploadSessionRecord


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
    has_thumbnail: Mapped[bool] = mapped_column(Boolean())


_FIELDS = (
    "id",
    "owner_id",
    "filename",
    "content_type",
    "declared_type",
    "size",
    "sha256",
    "inline",
    "created_at",
    "has_thumbnail",
)
_unavailable_on_outage = unavailable_on(OperationalError, what="the database")


class _OverQuota(Exception):
    """Rolls back a file's insertion that would take its owner past the quota."""


def _domain(row: FileRow) -> StoredFile:
    return StoredFile(**{f: getattr(row, f) for f in _FIELDS})


class SqlFileRepository:
    """Files in the `files` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @_unavailable_on_outage
    async def add(self, file: StoredFile, reservation_id: uuid.UUID | None, quota: int) -> bool:
        """Insert the file and turn its reservation into stored bytes, in one transaction; False (nothing
        changed) when the bytes the reservation does not cover would take the owner past `quota`."""
        try:
            async with self._db.session() as session, session.begin():
                # The reservation's bytes go back and the file's exact size is charged: a stream reserves in
                # steps, so it may hold a little more than it stored (or, its lease lapsed, nothing at all).
                if reservation_id is not None:
                    await take_reservation(session, reservation_id)
                if not await charge(session, file.owner_id, file.size, quota):
                    raise _OverQuota
                session.add(FileRow(**{f: getattr(file, f) for f in _FIELDS}))
        except _OverQuota:
            return False
        return True

    @_unavailable_on_outage
    async def reserve(
        self, reservation_id: uuid.UUID, owner_id: str, amount: int, quota: int, expires_at: datetime
    ) -> bool:
        """Add `amount` to a reservation (made if missing) and move its expiry, if the owner stays within
        `quota`; whether it was granted."""
        async with self._db.session() as session, session.begin():
            if not await charge(session, owner_id, amount, quota):
                return False
            grown = await session.execute(
                update(ReservationRow)
                .where(ReservationRow.id == reservation_id)
                .values(bytes=ReservationRow.bytes + amount, expires_at=expires_at)
            )
            if not grown.rowcount:  # type: ignore[attr-defined]
                session.add(ReservationRow(id=reservation_id, owner_id=owner_id, bytes=amount, expires_at=expires_at))
            return True

    @_unavailable_on_outage
    async def release(self, reservation_id: uuid.UUID) -> None:
        """Give a reservation's bytes back (missing is fine)."""
        async with self._db.session() as session, session.begin():
            await take_reservation(session, reservation_id)

    @_unavailable_on_outage
    async def release_expired(self, now: datetime, limit: int = 100) -> int:
        """Give back reservations that lapsed (their process died, or a session expired); how many."""
        async with self._db.session() as session:
            lapsed = list(
                await session.scalars(select(ReservationRow.id).where(ReservationRow.expires_at < now).limit(limit))
            )
        released = 0
        for reservation_id in lapsed:
            async with self._db.session() as session, session.begin():
                released += bool(await take_reservation(session, reservation_id, before=now))
        return released

    @_unavailable_on_outage
    async def get(self, file_id: uuid.UUID) -> StoredFile | None:
        async with self._db.session() as session:
            row = await session.get(FileRow, file_id)
            return _domain(row) if row else None

    @_unavailable_on_outage
    async def page(
        self, owner_id: str, before: tuple[datetime, uuid.UUID] | None, limit: int, content_type: str = ""
    ) -> list[StoredFile]:
        query = (
            select(FileRow)
            .where(FileRow.owner_id == owner_id)
            .order_by(FileRow.created_at.desc(), FileRow.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(tuple_(FileRow.created_at, FileRow.id) < tuple_(*before))
        if content_type.endswith("/*"):
            query = query.where(FileRow.content_type.startswith(content_type[:-1], autoescape=True))
        elif content_type:
            query = query.where(FileRow.content_type == content_type)
        async with self._db.session() as session:
            return [_domain(r) for r in await session.scalars(query)]

    @_unavailable_on_outage
    async def delete(self, file_id: uuid.UUID) -> bool:
        async with self._db.session() as session, session.begin():
            query = delete(FileRow).where(FileRow.id == file_id).returning(FileRow.owner_id, FileRow.size)
            removed = (await session.execute(query)).first()
            if removed is None:
                return False
            await credit(session, removed[0], removed[1])
            return True

    @_unavailable_on_outage
    async def used_bytes(self, owner_id: str) -> int:
        """Bytes the owner's files and unfinished uploads hold."""
        async with self._db.session() as session:
            total = await session.scalar(select(UsageRow.used_bytes).where(UsageRow.owner_id == owner_id))
            return int(total or 0)


class UploadSessionRow(Base):
    """The `upload_sessions` table (migration files_0002): resumable uploads survive a restart."""

    __tablename__ = "upload_sessions"
    __table_args__ = (
        Index("ix_upload_sessions_owner_id_state", "owner_id", "state"),
        Index("ix_upload_sessions_state_expires_at", "state", "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(36))
    filename: Mapped[str] = mapped_column(String(255))
    declared_type: Mapped[str] = mapped_column(String(127))
    size_bytes: Mapped[int] = mapped_column(BigInteger())
    sha256: Mapped[str] = mapped_column(String(64))
    received: Mapped[int] = mapped_column(BigInteger())
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    file_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), nullable=True)


_SESSION_FIELDS = (
    "id",
    "owner_id",
    "filename",
    "declared_type",
    "size_bytes",
    "sha256",
    "received",
    "state",
    "created_at",
    "expires_at",
    "file_id",
)


def _session(row: UploadSessionRow) -> UploadSessionRecord:
    return UploadSessionRecord(**{f: getattr(row, f) for f in _SESSION_FIELDS})


class _Held:
    """A session's lock in this process and how many calls are using it (the entry goes with the last)."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self.lock = lock
        self.users = 0


class SqlUploadSessions:
    """Upload sessions in `upload_sessions`. `locked` holds the session's row lock (and, for SQLite, which has
    none, a lock in this process) while a part is written, so two writers never interleave on one session."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._locks: dict[uuid.UUID, _Held] = {}

    @_unavailable_on_outage
    async def add(self, record: UploadSessionRecord) -> None:
        async with self._db.session() as session, session.begin():
            session.add(UploadSessionRow(**{f: getattr(record, f) for f in _SESSION_FIELDS}))

    @_unavailable_on_outage
    async def get(self, session_id: uuid.UUID) -> UploadSessionRecord | None:
        async with self._db.session() as session:
            row = await session.get(UploadSessionRow, session_id)
            return _session(row) if row else None

    @contextlib.asynccontextmanager
    async def locked(self, session_id: uuid.UUID) -> AsyncIterator[UploadSessionRecord | None]:
        """The session, locked; changes made to the yielded record are written when the block ends cleanly."""
        entry = self._locks.get(session_id)
        if entry is None:
            entry = self._locks[session_id] = _Held(asyncio.Lock())
        entry.users += 1
        try:
            async with entry.lock, self._db.session() as session, session.begin():
                row = await session.get(UploadSessionRow, session_id, with_for_update=True)
                record = _session(row) if row else None
                yield record
                if row is not None and record is not None:
                    for f in _SESSION_FIELDS[1:]:
                        setattr(row, f, getattr(record, f))
        finally:
            entry.users -= 1
            if not entry.users:
                del self._locks[session_id]

    @_unavailable_on_outage
    async def active_count(self, owner_id: str) -> int:
        """How many unfinished sessions the owner has (their bytes are held as reservations)."""
        query = select(func.count()).where(UploadSessionRow.owner_id == owner_id, UploadSessionRow.state == ACTIVE)
        async with self._db.session() as session:
            return int(await session.scalar(query) or 0)

    @_unavailable_on_outage
    async def expired(self, now: datetime, limit: int = 100) -> list[uuid.UUID]:
        """Active sessions past their expiry."""
        query = (
            select(UploadSessionRow.id)
            .where(UploadSessionRow.state == ACTIVE, UploadSessionRow.expires_at < now)
            .limit(limit)
        )
        async with self._db.session() as session:
            return list(await session.scalars(query))
