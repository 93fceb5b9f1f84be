"""Files use cases: streamed uploads that store nothing unless complete and checked, downloads, listing, deletion.

Never imports grpc. An upload's bytes go to storage as they arrive (memory stays flat); the SHA-256, the size
limit and the per-user quota are checked on the way, at the chunk that crosses; the content type is detected
from the bytes and checked against the allowlist. The row is written only after the bytes are durable, and
any failure (a check, a cancelled stream, a crash) leaves neither row nor object.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pynode.core import tasks
from pynode.core.db import utcnow
from pynode.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    QuotaViolation,
)
from pynode.core.paging import decode_token, encode_token, invalid_page_token, keyset, keyset_token, page_size
from pynode.core.principal import Principal
from pynode.files import detect, thumbnails
from pynode.files.domain import StoredFile, object_key, past_the_end
from pynode.files.lanes import Lane, Lanes
from pynode.files.memory import MemoryReturn
from pynode.files.metrics import FilesMetrics
from pynode.files.names import display_name
from pynode.files.ports import BlobStore, BlobWriter, FileRepository
from pynode.files.scanner import ClamdScanner, Scan

RESERVE_STEP = 8 * 1024 * 1024  # a stream reserves quota in steps: one database write per 8 MiB, not per chunk
STREAM_LEASE = timedelta(hours=1)  # a stream's reservation lapses this long after its last step (a crash's)
log = logging.getLogger("pynode.files")

PIPELINE_DEPTH = 4  # chunks received ahead of the one being written (at most this many MiB per upload)
_HASH_IN_THREAD = 64 * 1024  # hashing a larger chunk on the loop would stall every other call


@dataclass(frozen=True)
class Limits:
    """Upload limits from settings."""

    max_bytes: int
    quota_bytes: int
    allowed_types: tuple[str, ...]
    thumbnail_pixels: int = 256
    max_image_pixels: int = 50_000_000
    url_seconds: int = 900  # lifetime of a direct download URL
    max_image_bytes: int = 128 * 1024 * 1024  # decoding one image for its thumbnail
    thumbnail_concurrency: int = 2  # thumbnails rendered at once in a process
    downloads_per_user: int = 16  # DownloadFile streams one user may have open at once in a process


@dataclass(frozen=True)
class UploadMetadata:
    """What a client declares before the bytes."""

    filename: str
    content_type: str
    size_bytes: int  # 0: not declared
    sha256: str  # empty: not declared


def _hash_and_write(digest: Any, write: Callable[[bytes], None], chunk: bytes) -> None:
    digest.update(chunk)
    write(chunk)


def check_sha256(value: str) -> None:
    """A declared SHA-256 is 64 lowercase hex digits (or absent)."""
    if value and (len(value) != 64 or value.strip("0123456789abcdef")):
        raise InvalidArgument(
            "metadata.sha256 must be 64 lowercase hex digits",
            [FieldViolation("metadata.sha256", "must be 64 lowercase hex digits", "BAD_FORMAT")],
        )


def too_big(limit: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"files may be at most {limit} bytes",
        retry_after=0,
        reason="FILE_TOO_LARGE",
        violations=[QuotaViolation("files:max_bytes", f"at most {limit} bytes per file")],
    )


def over_quota(quota: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"this upload would take your storage past its quota of {quota} bytes; delete files first",
        retry_after=0,
        reason="QUOTA_EXCEEDED",
        violations=[QuotaViolation("files:quota", f"at most {quota} bytes stored per user")],
    )


async def _nothing() -> AsyncGenerator[bytes, None]:
    return
    yield b""  # an async generator that yields nothing


class FilesService:
    """The files use cases."""

    def __init__(
        self,
        store: BlobStore,
        files: FileRepository,
        limits: Limits,
        scanner: ClamdScanner | None = None,
        metrics: FilesMetrics | None = None,
    ) -> None:
        self.store = store
        self.files = files
        self.limits = limits
        self.scanner = scanner
        self.metrics = metrics or FilesMetrics()
        self._lanes = Lanes()
        # Thumbnails hold their source (up to 64 MiB) and its decoding (up to max_image_bytes): a few at a time.
        self._rendering = asyncio.Semaphore(limits.thumbnail_concurrency)
        # Open DownloadFile streams per user, in this process: each pins a read buffer, the messages gRPC holds
        # until the client's flow control takes them, and a file descriptor or S3 connection.
        self._downloads: dict[str, int] = {}
        self._memory = MemoryReturn()

    def close(self) -> None:
        """Stop the upload lanes' threads (after the server stopped taking calls)."""
        self._lanes.close()

    async def reserve(self, reservation_id: uuid.UUID, owner: str, amount: int, expires_at: datetime) -> None:
        """Hold `amount` more bytes of the owner's quota for an unfinished upload, or refuse (QUOTA_EXCEEDED)."""
        if amount and not await self.files.reserve(reservation_id, owner, amount, self.limits.quota_bytes, expires_at):
            raise over_quota(self.limits.quota_bytes)

    async def _reserve_for(self, reservation_id: uuid.UUID, owner: str, needed: int) -> int:
        """Reserve at least `needed` bytes: a whole step when the quota has room for it, else exactly them;
        how many were reserved."""
        expires = utcnow() + STREAM_LEASE
        step = max(needed, RESERVE_STEP)
        if step > needed and await self.files.reserve(reservation_id, owner, step, self.limits.quota_bytes, expires):
            return step
        await self.reserve(reservation_id, owner, needed, expires)
        return needed

    async def upload(self, caller: Principal, metadata: UploadMetadata, chunks: AsyncIterator[bytes]) -> StoredFile:
        """Store a streamed upload, or nothing."""
        try:
            stored = await self._upload(caller, metadata, chunks)
        except BaseException as exc:
            self.metrics.ended("stream", exc, 0)
            raise
        self.metrics.ended("stream", None, stored.size)
        return stored

    async def _upload(self, caller: Principal, metadata: UploadMetadata, chunks: AsyncIterator[bytes]) -> StoredFile:
        owner = caller.subject
        limits = self.limits
        check_sha256(metadata.sha256)
        if metadata.size_bytes > limits.max_bytes:
            raise too_big(limits.max_bytes)
        file_id = uuid.uuid4()  # known from the start: S3 writes the object's multipart upload under its key
        # The quota: the file's id names its reservation, which holds the declared size from the start (refused
        # before any byte), then grows in steps ahead of the bytes; publishing turns it into the stored size.
        reserved = metadata.size_bytes
        await self.reserve(file_id, owner, reserved, utcnow() + STREAM_LEASE)
        try:
            return await self._receive(caller, metadata, chunks, file_id, reserved)
        except BaseException:
            await asyncio.shield(self.release(file_id))
            raise

    async def release(self, reservation_id: uuid.UUID) -> None:
        """Give an unfinished upload's reservation back; should the database fail now, its lease lapses and the
        sweep gives it back (the error that ended the upload is the one to report)."""
        try:
            await self.files.release(reservation_id)
        except Exception as exc:  # a backstop exists; the original error matters more
            log.warning("could not release an upload's reservation now (%s); it lapses", type(exc).__name__)

    async def sweep_reservations(self) -> int:
        """Give back reservations whose lease lapsed (a process that died mid-upload); how many."""
        return await self.files.release_expired(utcnow())

    async def _receive(
        self,
        caller: Principal,
        metadata: UploadMetadata,
        chunks: AsyncIterator[bytes],
        file_id: uuid.UUID,
        reserved: int,
    ) -> StoredFile:
        owner = caller.subject
        limits = self.limits
        scan = await self.scanner.start() if self.scanner is not None else None
        writer = self.store.begin(object_key(owner, file_id))
        behind: deque[asyncio.Future[None]] = deque()
        # Local files are hashed and written in order on one lane (lanes.py), up to PIPELINE_DEPTH chunks behind
        # the one being received. S3, and scanned uploads (clamd's stream is fed from the loop): one at a time.
        lane = self._lanes.lane() if writer.write_blocking is not None else None
        depth = PIPELINE_DEPTH if lane is not None and scan is None else 1
        digest = hashlib.sha256()
        size = 0
        head = bytearray()
        detected: str | None = None
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limits.max_bytes:
                    raise too_big(limits.max_bytes)
                if size > reserved:
                    reserved += await self._reserve_for(file_id, owner, size - reserved)
                if detected is None:
                    head += chunk[: detect.SNIFF_BYTES - len(head)]
                    if len(head) >= detect.SNIFF_BYTES:
                        detected = self.check_type(bytes(head), metadata.content_type)
                # A pipeline: chunks are hashed, written (and scanned) while the next ones arrive, at most
                # `depth` behind; one lane (a single thread) takes them in order, so the hash sees them in order.
                while len(behind) >= depth:
                    await behind[0]
                    behind.popleft()
                behind.append(asyncio.ensure_future(self._absorb(chunk, digest, writer, scan, lane)))
            while behind:
                await behind[0]
                behind.popleft()
            if detected is None:
                detected = self.check_type(bytes(head), metadata.content_type)
            if metadata.size_bytes and size != metadata.size_bytes:
                raise InvalidArgument(
                    f"the upload has {size} bytes, not the {metadata.size_bytes} declared",
                    [FieldViolation("metadata.size_bytes", f"the content has {size} bytes", "SIZE_MISMATCH")],
                )
            if scan is not None:
                await scan.verdict()
            sha256 = digest.hexdigest()
            if metadata.sha256 and sha256 != metadata.sha256:
                raise InvalidArgument(
                    "the content's SHA-256 is not the one declared",
                    [FieldViolation("metadata.sha256", "does not match the content", "CHECKSUM_MISMATCH")],
                )
            file = StoredFile(
                file_id,
                owner,
                display_name(metadata.filename),
                detected,
                metadata.content_type[:127],
                size,
                sha256,
                detect.inline_safe(detected),
                utcnow(),
            )
            await writer.commit()
        except BaseException:
            for work in behind:
                await tasks.stop(work)
            if lane is not None:
                await lane.stop()  # what it is writing now ends before the abort
            if scan is not None:
                scan.close()
            await asyncio.shield(writer.abort())
            raise
        return await self.publish(file, file_id)

    async def publish(self, file: StoredFile, reservation_id: uuid.UUID) -> StoredFile:
        """Make a file whose bytes are stored visible: its thumbnail, then its row, in the transaction that
        turns its reservation into stored bytes (the quota is checked there again). Should any of it fail (a
        decompression bomb, the quota, the database), the objects go and nothing is visible."""
        try:
            file = await self._with_thumbnail(file)
            if not await self.files.add(file, reservation_id, self.limits.quota_bytes):
                raise over_quota(self.limits.quota_bytes)
        except BaseException:
            await asyncio.shield(self._delete_objects(file))  # no object without its row
            raise
        return file

    async def _with_thumbnail(self, file: StoredFile) -> StoredFile:
        if file.content_type not in thumbnails.THUMBNAILED or file.size > thumbnails.MAX_SOURCE_BYTES:
            return file
        limits = self.limits
        async with self._rendering:
            data = b"".join([chunk async for chunk in self.store.read(file.key, 0, None)])
            rendered = await thumbnails.thumbnail(
                data, limits.thumbnail_pixels, limits.max_image_pixels, limits.max_image_bytes
            )
            del data
        if rendered is None:
            return file  # not an image Pillow reads after all: stored, without a thumbnail
        writer = self.store.begin(file.thumbnail_key)
        try:
            await writer.write(rendered)
            await writer.commit()
        except BaseException:
            await asyncio.shield(writer.abort())
            raise
        return replace(file, has_thumbnail=True)

    async def _delete_objects(self, file: StoredFile) -> None:
        await self.store.delete(file.key)
        await self.store.delete(file.thumbnail_key)

    @staticmethod
    async def _absorb(chunk: bytes, digest: Any, writer: BlobWriter, scan: Scan | None, lane: Lane | None) -> None:
        """Hash, write and scan one chunk at once (hashing and writing run in threads, off the loop)."""
        work: list[Awaitable[None]]
        if lane is not None and writer.write_blocking is not None:
            # One trip to a thread for both (a trip each cost 0.8 ms of CPU per MiB more, measured); every chunk
            # whatever its size, since the lane keeps the order.
            work = [lane.run(functools.partial(_hash_and_write, digest, writer.write_blocking), chunk)]
        else:
            work = [writer.write(chunk)]
            if len(chunk) >= _HASH_IN_THREAD:
                work.append(asyncio.to_thread(digest.update, chunk))
            else:
                digest.update(chunk)
        if scan is not None:  # scanned alongside the write, not after it
            work.append(scan.feed(chunk))
        await asyncio.gather(*work)

    def check_type(self, head: bytes, declared: str) -> str:
        """The type the bytes show, refused unless the allowlist has it."""
        detected = detect.refine(detect.detect(head), declared)
        if not detect.allowed(detected, self.limits.allowed_types):
            raise FailedPrecondition(
                f"files of type {detected} are not accepted here",
                reason="TYPE_NOT_ALLOWED",
                metadata={"detected_type": detected},
            )
        return detected

    async def get(self, caller: Principal, file_id: str) -> StoredFile:
        """A file the caller may read: its own, or any for an admin; every other id is NOT_FOUND."""
        file = await self.files.get(uuid.UUID(file_id))
        if file is None or (file.owner_id != caller.subject and caller.role != "admin"):
            raise NotFound(f"no file {file_id}", reason="FILE_NOT_FOUND")
        return file

    async def download(
        self, caller: Principal, file_id: str, offset: int, length: int, *, thumbnail: bool = False
    ) -> tuple[StoredFile, AsyncGenerator[bytes, None]]:
        """The file and its bytes (or its thumbnail's) from `offset`, `length` of them or to the end."""
        file = await self.get(caller, file_id)
        if thumbnail:
            if not file.has_thumbnail:
                raise NotFound(f"file {file_id} has no thumbnail", reason="THUMBNAIL_NOT_FOUND")
            return file, self._counted(caller.subject, self.store.read(file.thumbnail_key, offset, length or None))
        if offset > file.size:
            raise past_the_end(offset, file.size)
        if offset == file.size:  # nothing to read: S3 would answer a range past the end with an error
            return file, _nothing()
        return file, self._counted(caller.subject, self.store.read(file.key, offset, length or None))

    async def _counted(self, owner: str, chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
        """The chunks, within the user's cap of open downloads. Counted from the first chunk asked for (a
        stream that never starts holds nothing) to the generator's close, which the caller makes prompt."""
        cap = self.limits.downloads_per_user
        if self._downloads.get(owner, 0) >= cap:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()
            raise QuotaExceeded(
                f"at most {cap} downloads may be open at once; finish or cancel one first",
                retry_after=1.0,
                reason="TOO_MANY_DOWNLOADS",
                violations=[QuotaViolation("files:downloads", f"at most {cap} open downloads per user")],
            )
        self._downloads[owner] = self._downloads.get(owner, 0) + 1
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            left = self._downloads[owner] - 1
            if left:
                self._downloads[owner] = left
            else:
                del self._downloads[owner]
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()  # the file descriptor or the S3 connection goes now, not at garbage collection
            await self._memory.after_release(sum(self._downloads.values()))

    async def list(
        self, caller: Principal, size: int, token: str, content_type: str = ""
    ) -> tuple[list[StoredFile], str]:
        """The caller's files, newest first, optionally of one type or family (`image/*`)."""
        limit = page_size(size)
        content_type = content_type.strip().lower()
        position = decode_token(token)
        before = None
        if position:
            if position.get("f", "") != content_type:
                raise invalid_page_token()
            before = keyset(position)
        found = await self.files.page(caller.subject, before, limit + 1, content_type)
        next_token = ""
        if len(found) > limit:
            found = found[:limit]
            last = found[-1]
            next_token = encode_token({**keyset_token(last.created_at, last.id), "f": content_type})
        return found, next_token

    async def download_url(self, caller: Principal, file_id: str, *, thumbnail: bool = False) -> tuple[str, datetime]:
        """A short-lived direct URL: S3 presigns one (an attachment, never shown in place); local storage has
        none to give yet."""
        file = await self.get(caller, file_id)
        if thumbnail and not file.has_thumbnail:
            raise NotFound(f"file {file_id} has no thumbnail", reason="THUMBNAIL_NOT_FOUND")
        key, content_type = (file.thumbnail_key, "image/webp") if thumbnail else (file.key, file.content_type)
        seconds = self.limits.url_seconds
        url = await self.store.download_url(key, file.filename, content_type, seconds)
        if url is not None:
            return url, utcnow() + timedelta(seconds=seconds)
        raise FailedPrecondition(
            "direct download URLs need S3 storage (DEVPYNODE_STORAGE_URL=s3://...) or the browser gateway; "
            "this server keeps files on local disk: use DownloadFile",
            reason="DOWNLOAD_URL_UNAVAILABLE",
            metadata={"storage": "local"},
        )

    async def read_for_user(
        self, caller: Principal, file_id: str, user_id: str, *, thumbnail: bool = False
    ) -> tuple[StoredFile, AsyncIterator[bytes]]:
        """A service reading a file for one of its users (chat, for a conversation's member): the file must be
        that user's; anything else is NOT_FOUND. The access level (service tokens only) is the contract's."""
        file = await self.files.get(uuid.UUID(file_id))
        if file is None or file.owner_id != str(uuid.UUID(user_id)):
            raise NotFound(f"no file {file_id} for that user", reason="FILE_NOT_FOUND")
        if thumbnail and not file.has_thumbnail:
            raise NotFound(f"file {file_id} has no thumbnail", reason="THUMBNAIL_NOT_FOUND")
        return file, self.store.read(file.thumbnail_key if thumbnail else file.key, 0, None)

    async def delete(self, caller: Principal, file_id: str) -> None:
        """Remove a file: the row first (it is gone for readers at once), then its bytes."""
        file = await self.get(caller, file_id)
        if await self.files.delete(file.id):
            await self._delete_objects(file)
