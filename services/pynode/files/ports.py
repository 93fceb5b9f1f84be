"""What the files service needs from the outside world: byte storage and the files table."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from pynode.files.domain import StoredFile, UploadSessionRecord

Chunk = bytes | memoryview
"""A run of an upload's bytes: a streamed upload's chunks are views of the messages gRPC received (no copy)."""

Observer = Callable[[Chunk], None]
"""Called with each chunk, in order, by whoever carries the bytes to a thread anyway (the content check's
SHA-256 rides along with a local write: one trip to a thread per chunk, not two)."""


class BlobWriter(Protocol):
    """An object being written: invisible until `commit`, gone after `abort`. The writer owns its pipeline
    (local: chunks written on an ordered lane, a few behind; S3: one part in flight while the next fills); a
    failure in it surfaces at a later `write` or at `commit`."""

    async def write(self, chunk: Chunk) -> None:
        """Append bytes (they go to storage now: memory stays flat, at most a few chunks behind)."""

    async def drain(self) -> None:
        """Wait until every chunk written so far was observed and is with storage (raising the pipeline's
        failure, if any); the checks read the digest after this."""

    async def commit(self) -> None:
        """Make the bytes durable and visible under the key (local: fsync and rename; S3: complete the
        multipart upload)."""

    async def abort(self) -> None:
        """Discard everything written (idempotent; S3: abort the multipart upload)."""


class BlobStore(Protocol):
    """Where file bytes live: a local directory, or an S3 bucket."""

    def begin(self, key: str, observe: Observer | None = None) -> BlobWriter:
        """A new object being written, to become `key`; `observe` sees every chunk written, in order, off the
        event loop."""

    def read(self, key: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        """Chunks of at most 1 MiB from `offset`, `length` bytes or to the end."""

    async def delete(self, key: str) -> None:
        """Remove an object (missing is fine)."""

    async def download_url(self, key: str, filename: str, content_type: str, seconds: int) -> str | None:
        """A URL that downloads the object directly for `seconds` (as an attachment named `filename`), or None
        when this store has none to give."""


class FileRepository(Protocol):
    """The `files` table."""

    async def add(self, file: StoredFile, reservation_id: uuid.UUID | None, quota: int) -> bool:
        """Insert a file whose bytes are stored, in the transaction that turns its reservation into stored
        bytes; False (nothing inserted) when that would take the owner past `quota`."""

    async def reserve(
        self, reservation_id: uuid.UUID, owner_id: str, amount: int, quota: int, expires_at: datetime
    ) -> bool:
        """Hold `amount` more bytes for an unfinished upload (the reservation is made if missing, and lapses at
        `expires_at`) if the owner stays within `quota`; whether it was granted. The database decides, so
        concurrent uploads in any number of processes never pass the quota together."""

    async def release(self, reservation_id: uuid.UUID) -> None:
        """Give a reservation's bytes back (missing is fine)."""

    async def release_expired(self, now: datetime, limit: int = 100) -> int:
        """Give back reservations whose lease lapsed (a crashed process's, an expired session's); how many."""

    async def get(self, file_id: uuid.UUID) -> StoredFile | None:
        """A file by id, whoever owns it (callers check)."""

    async def page(
        self, owner_id: str, before: tuple[datetime, uuid.UUID] | None, limit: int, content_type: str = ""
    ) -> list[StoredFile]:
        """The owner's files newest first, strictly before `before`, optionally of one type (`image/*`: a
        family)."""

    async def delete(self, file_id: uuid.UUID) -> bool:
        """Remove the row and give its bytes back to the owner's usage; whether it existed."""

    async def used_bytes(self, owner_id: str) -> int:
        """Bytes the owner's files and unfinished uploads hold."""


class UploadSessionRepository(Protocol):
    """The `upload_sessions` table."""

    async def add(self, record: UploadSessionRecord) -> None:
        """Insert a new session."""

    async def get(self, session_id: uuid.UUID) -> UploadSessionRecord | None:
        """A session by id, whoever owns it (callers check)."""

    def locked(self, session_id: uuid.UUID) -> AbstractAsyncContextManager[UploadSessionRecord | None]:
        """The session under its lock; changes to the record are saved when the block ends cleanly."""

    async def active_count(self, owner_id: str) -> int:
        """How many unfinished sessions the owner has."""

    async def expired(self, now: datetime, limit: int = 100) -> list[uuid.UUID]:
        """Active sessions past their expiry."""


class ScanStream(Protocol):
    """One scan in progress: the bytes in order, then the verdict."""

    async def feed(self, chunk: Chunk) -> None:
        """Send the next bytes to the scanner (UNAVAILABLE when it gave up)."""

    async def verdict(self) -> None:
        """End the stream; FAILED_PRECONDITION (MALWARE_DETECTED) on a detection, UNAVAILABLE when the scanner
        cannot say."""

    def close(self) -> None:
        """Drop the scan (idempotent)."""


class Scanner(Protocol):
    """A malware scanner (clamd); a configured one that cannot be reached fails closed."""

    async def start(self) -> ScanStream:
        """A new scan (UNAVAILABLE when the scanner cannot be reached)."""


class StagedObject(Protocol):
    """A session's bytes on their way to becoming an object: read once (for the checks), then committed
    as the object or aborted."""

    def chunks(self) -> AsyncIterator[bytes]:
        """The bytes, in order (S3: written to the object's multipart upload as they are read)."""

    async def commit(self) -> None:
        """Make the object visible under its key (after `chunks` was read to the end)."""

    async def abort(self) -> None:
        """Leave no object (idempotent); the staged bytes stay until discarded."""


class Staging(Protocol):
    """Where upload sessions' bytes wait until they complete (local: a file per session; S3: an object per
    part)."""

    async def write(self, session_id: uuid.UUID, offset: int, data: bytes) -> None:
        """Write `data` at `offset`, dropping anything after it, durably."""

    def assemble(self, session_id: uuid.UUID, length: int, key: str, observe: Observer | None = None) -> StagedObject:
        """The session's first `length` bytes, to become the object `key`; `observe` sees each chunk as it is
        read, in order, off the event loop."""

    async def discard(self, session_id: uuid.UUID) -> None:
        """Drop the bytes (missing is fine)."""
