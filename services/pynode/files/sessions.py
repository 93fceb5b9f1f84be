"""Resumable uploads: for browsers (grpc-web cannot stream uploads) and unreliable links.

A session records how many bytes it has (`received`); a part is appended only at exactly that offset (any
other is FAILED_PRECONDITION carrying the current offset, so a client resumes from there). Parts are durable
before they are counted, and the record lives in the database, so sessions survive a restart. Completing
checks the size, the SHA-256 and the content type, then makes the file; cancelling or expiring discards the
bytes. Nothing is visible as a file before completion.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

from pynode.core.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    QuotaViolation,
)
from pynode.core.principal import Principal
from pynode.core.timestamps import utcnow
from pynode.files import detect
from pynode.files.domain import ACTIVE, CANCELLED, COMPLETED, StoredFile, UploadSessionRecord, object_key
from pynode.files.names import display_name
from pynode.files.ports import Staging, UploadSessionRepository
from pynode.files.service import FilesService, UploadMetadata, check_sha256, too_big

log = logging.getLogger("pynode.files")

PART_SIZE = 1024 * 1024
MAX_ACTIVE_SESSIONS = 100
SWEEP_SECONDS = 600.0


class UploadSessions:
    """The upload session use cases, on top of the files service's limits and tables."""

    def __init__(
        self, files: FilesService, sessions: UploadSessionRepository, staging: Staging, lifetime_hours: float
    ) -> None:
        self.files = files
        self.sessions = sessions
        self.staging = staging
        self.lifetime = timedelta(hours=lifetime_hours)

    async def _owned(self, caller: Principal, session_id: str) -> UploadSessionRecord:
        record = await self.sessions.get(uuid.UUID(session_id))
        return self._check_owner(caller, record, session_id)

    @staticmethod
    def _check_owner(caller: Principal, record: UploadSessionRecord | None, session_id: str) -> UploadSessionRecord:
        if record is None or record.owner_id != caller.subject:
            raise NotFound(f"no upload session {session_id}", reason="UPLOAD_SESSION_NOT_FOUND")
        return record

    @staticmethod
    def _active(record: UploadSessionRecord) -> None:
        if record.state == ACTIVE and record.expires_at <= utcnow():
            record.state = CANCELLED  # expired: the sweep will discard its bytes, the caller learns now
        if record.state != ACTIVE:
            raise FailedPrecondition(
                f"the upload session is {record.state}; start a new one",
                reason="UPLOAD_SESSION_NOT_ACTIVE",
                metadata={"state": record.state},
            )

    async def create(self, caller: Principal, metadata: UploadMetadata) -> UploadSessionRecord:
        check_sha256(metadata.sha256)
        limits = self.files.limits
        if metadata.size_bytes > limits.max_bytes:
            raise too_big(limits.max_bytes)
        if await self.sessions.active_count(caller.subject) >= MAX_ACTIVE_SESSIONS:
            raise QuotaExceeded(
                f"at most {MAX_ACTIVE_SESSIONS} unfinished upload sessions; complete or cancel some first",
                retry_after=0,
                reason="TOO_MANY_UPLOAD_SESSIONS",
                violations=[QuotaViolation("files:upload_sessions", "unfinished upload sessions per user")],
            )
        now = utcnow()
        record = UploadSessionRecord(
            uuid.uuid4(),
            caller.subject,
            display_name(metadata.filename),
            metadata.content_type[:127],
            metadata.size_bytes,
            metadata.sha256,
            0,
            ACTIVE,
            now,
            now + self.lifetime,
        )
        # The session's id names its reservation: the declared size is held from the start (the bytes of an
        # undeclared one as its parts arrive) until it completes, is cancelled or expires.
        await self.files.reserve(record.id, record.owner_id, record.size_bytes, record.expires_at)
        try:
            await self.sessions.add(record)
        except BaseException:
            await asyncio.shield(self.files.release(record.id))
            raise
        return record

    async def get(self, caller: Principal, session_id: str) -> UploadSessionRecord:
        record = await self._owned(caller, session_id)
        if record.state == ACTIVE and record.expires_at <= utcnow():
            record.state = CANCELLED
        return record

    async def part(self, caller: Principal, session_id: str, offset: int, data: bytes) -> UploadSessionRecord:
        limits = self.files.limits
        async with self.sessions.locked(uuid.UUID(session_id)) as record:
            record = self._check_owner(caller, record, session_id)
            self._active(record)
            if offset != record.received:
                raise FailedPrecondition(
                    f"this part starts at {offset} but the session has {record.received} bytes; resume from there",
                    reason="OFFSET_MISMATCH",
                    metadata={"received_bytes": str(record.received)},
                )
            end = record.received + len(data)
            if end > limits.max_bytes:
                raise too_big(limits.max_bytes)
            if record.size_bytes and end > record.size_bytes:
                raise InvalidArgument(
                    f"the session was declared {record.size_bytes} bytes; this part would make it {end}",
                    [FieldViolation("data", f"past the declared size of {record.size_bytes} bytes", "SIZE_MISMATCH")],
                )
            if not record.size_bytes:
                await self.files.reserve(record.id, record.owner_id, len(data), record.expires_at)
            await self.staging.write(record.id, offset, data)
            record.received = end
            return record

    async def complete(self, caller: Principal, session_id: str) -> StoredFile:
        try:
            file = await self._complete(caller, session_id)
        except BaseException as exc:
            self.files.metrics.ended("session", exc, 0)
            raise
        self.files.metrics.ended("session", None, file.size)
        return file

    async def _complete(self, caller: Principal, session_id: str) -> StoredFile:
        refused: DomainError | None = None
        async with self.sessions.locked(uuid.UUID(session_id)) as record:
            record = self._check_owner(caller, record, session_id)
            self._active(record)
            if record.size_bytes and record.received != record.size_bytes:
                raise FailedPrecondition(
                    f"the session has {record.received} of {record.size_bytes} bytes; send the rest first",
                    reason="UPLOAD_INCOMPLETE",
                    metadata={"received_bytes": str(record.received)},
                )
            try:
                file = await self._make_file(record)
            except (InvalidArgument, FailedPrecondition) as exc:
                # The content is refused (checksum, type, malware, an image bomb): the session is over and its
                # bytes go. The block ends cleanly so that the cancelled state is saved, then the error is raised.
                await self.staging.discard(record.id)
                await self.files.release(record.id)
                record.state, refused = CANCELLED, exc
            else:
                record.state, record.file_id = COMPLETED, file.id
        if refused is not None:
            raise refused
        # The parts are the file now (S3 copied them; locally the file was renamed): they go, or every session
        # upload would be stored twice. Should S3 fail here, the parts stay (logged): the file is made.
        try:
            await self.staging.discard(record.id)
        except Exception as exc:  # the file is made: that is the answer
            log.warning("could not discard a completed session's parts (%s)", type(exc).__name__)
        return file

    async def _make_file(self, record: UploadSessionRecord) -> StoredFile:
        """Check the staged bytes (the same content check as a streamed upload: type, SHA-256, scan) while they
        become the object, and publish them as a file; a refusal leaves no object."""
        file_id = uuid.uuid4()
        # The size was checked against the record (`received`): the check compares the digest and the type.
        check = await self.files.content_check(record.declared_type, 0, record.sha256)
        staged = self.staging.assemble(record.id, record.received, object_key(record.owner_id, file_id), check.observe)
        try:
            async for chunk in staged.chunks():
                await check.see(chunk)
            checked = await check.finish("; the session is discarded")
            await staged.commit()
        except BaseException:
            await asyncio.shield(staged.abort())
            raise
        finally:
            check.close()
        content_type, sha256 = checked.content_type, checked.sha256
        file = StoredFile(
            file_id,
            record.owner_id,
            record.filename,
            content_type,
            record.declared_type,
            record.received,
            sha256,
            detect.inline_safe(content_type),
            utcnow(),
        )
        return await self.files.publish(file, record.id)

    async def cancel(self, caller: Principal, session_id: str) -> None:
        async with self.sessions.locked(uuid.UUID(session_id)) as record:
            record = self._check_owner(caller, record, session_id)
            if record.state == ACTIVE:
                record.state = CANCELLED
                await self.staging.discard(record.id)
                await self.files.release(record.id)

    async def sweep(self) -> int:
        """Discard expired sessions' bytes; how many."""
        swept = 0
        for session_id in await self.sessions.expired(utcnow()):
            async with self.sessions.locked(session_id) as record:
                if record is not None and record.state == ACTIVE:
                    record.state = CANCELLED
                    await self.staging.discard(session_id)
                    await self.files.release(session_id)
                    swept += 1
        return swept + await self.files.sweep_reservations()
