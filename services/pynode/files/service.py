"""Files use cases: streamed uploads that store nothing unless complete and checked, downloads, listing, deletion.

Never imports grpc. An upload's bytes go to storage as they arrive (memory stays flat), through the store's
writer, which owns its pipeline; the size limit and the per-user quota are checked on the way, at the chunk
that crosses; the content check (content.py: type from the bytes against the allowlist, SHA-256, scan) is the
one upload sessions use too. The row is written only after the bytes are durable, and
any failure (a check, a cancelled stream, a crash) leaves neither row nor object.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pynode.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    QuotaViolation,
)
from pynode.core.executors import Executors
from pynode.core.limits import Quota, Slots
from pynode.core.paging import keyset_page
from pynode.core.principal import Principal
from pynode.core.timestamps import utcnow
from pynode.files import detect, pools, thumbnails
from pynode.files.content import ContentCheck, Declared
from pynode.files.domain import StoredFile, object_key, past_the_end
from pynode.files.memory import MemoryReturn
from pynode.files.metrics import FilesMetrics
from pynode.files.names import display_name
from pynode.files.ports import BlobStore, Chunk, FileRepository, Scanner

RESERVE_STEP = 8 * 1024 * 1024  # a stream reserves quota in steps: one database write per 8 MiB, not per chunk
STREAM_LEASE = timedelta(hours=1)  # a stream's reservation lapses this long after its last step (a crash's)
log = logging.getLogger("pynode.files")


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
    downloads_per_address: int = 64  # ... and one client address, whatever its accounts (0: no limit)


@dataclass(frozen=True)
class UploadMetadata:
    """What a client declares before the bytes."""

    filename: str
    content_type: str
    size_bytes: int  # 0: not declared
    sha256: str  # empty: not declared


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
        scanner: Scanner | None = None,
        metrics: FilesMetrics | None = None,
        executors: Executors | None = None,
    ) -> None:
        self.store = store
        self.files = files
        self.limits = limits
        self.scanner = scanner
        self.metrics = metrics or FilesMetrics()
        # Thumbnails hold their source (up to 64 MiB) and its decoding (up to max_image_bytes): a few at a time,
        # on as many threads. The process's pools, or pools of its own (a tool's, a test's) that `close` stops.
        self._own_pools = executors is None
        threads = limits.thumbnail_concurrency
        self._rendering = asyncio.Semaphore(threads)
        self._renderer = pools.pool(executors, "files-thumbnails", threads)
        # One thread for malloc_trim: trims never overlap (each walks the heap holding the arenas' locks).
        trimmer = pools.pool(executors, "files-trim", 1)
        # Open DownloadFile streams per user, in this process: each pins a read buffer, the messages gRPC holds
        # until the client's flow control takes them, and a file descriptor or S3 connection.
        self._downloads: dict[str, int] = {}
        # And per client address: a user's cap alone let one address open as many as it had accounts.
        self._address_downloads = Slots(
            limits.downloads_per_address,
            Quota("files:downloads_per_address", "open downloads per client address", "TOO_MANY_DOWNLOADS"),
            f"at most {limits.downloads_per_address} downloads may be open at once from one address, whatever the "
            "account; finish or cancel one first",
        )
        self._memory = MemoryReturn(trimmer)

    def close(self) -> None:
        """Stop the service's own threads, when it made them (after the server stopped taking calls)."""
        if self._own_pools:
            pools.stop_own(self._renderer, self._memory.pool)

    async def content_check(self, declared_type: str, size_bytes: int, sha256: str) -> ContentCheck:
        """The checks an upload's bytes pass (streamed or a session's), its scan begun."""
        declared = Declared(declared_type, size_bytes, sha256)
        return await ContentCheck.start(declared, self.limits.allowed_types, self.scanner)

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

    async def upload(self, caller: Principal, metadata: UploadMetadata, chunks: AsyncIterator[Chunk]) -> StoredFile:
        """Store a streamed upload, or nothing."""
        try:
            stored = await self._upload(caller, metadata, chunks)
        except BaseException as exc:
            self.metrics.ended("stream", exc, 0)
            raise
        self.metrics.ended("stream", None, stored.size)
        await self._memory.after_release(sum(self._downloads.values()))  # its buffers go back to the system
        return stored

    async def _upload(self, caller: Principal, metadata: UploadMetadata, chunks: AsyncIterator[Chunk]) -> StoredFile:
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
        chunks: AsyncIterator[Chunk],
        file_id: uuid.UUID,
        reserved: int,
    ) -> StoredFile:
        owner = caller.subject
        limits = self.limits
        check = await self.content_check(metadata.content_type, metadata.size_bytes, metadata.sha256)
        # The writer hashes each chunk for the check as it writes it (local: in the same trip to its thread).
        writer = self.store.begin(object_key(owner, file_id), check.observe)
        try:
            async for chunk in chunks:
                size = check.size + len(chunk)
                if size > limits.max_bytes:
                    raise too_big(limits.max_bytes)
                if size > reserved:
                    reserved += await self._reserve_for(file_id, owner, size - reserved)
                await check.see(chunk)  # a refused type is refused before its head is written
                await writer.write(chunk)  # the writer's pipeline: returns while earlier chunks are written
            await writer.drain()
            checked = await check.finish()
            file = StoredFile(
                file_id,
                owner,
                display_name(metadata.filename),
                checked.content_type,
                metadata.content_type[:127],
                checked.size,
                checked.sha256,
                detect.inline_safe(checked.content_type),
                utcnow(),
            )
            await writer.commit()
        except BaseException:
            check.close()
            await asyncio.shield(writer.abort())  # what it is writing now ends before the abort
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
            rendered = await self._renderer.run(
                thumbnails.render, data, limits.thumbnail_pixels, limits.max_image_pixels, limits.max_image_bytes
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

    async def get(self, caller: Principal, file_id: str) -> StoredFile:
        """A file the caller may read: its own, or any for an admin; every other id is NOT_FOUND."""
        file = await self.files.get(uuid.UUID(file_id))
        if file is None or (file.owner_id != caller.subject and caller.role != "admin"):
            raise NotFound(f"no file {file_id}", reason="FILE_NOT_FOUND")
        return file

    async def download(
        self, caller: Principal, file_id: str, offset: int, length: int, *, thumbnail: bool = False, address: str = ""
    ) -> tuple[StoredFile, AsyncGenerator[bytes, None]]:
        """The file and its bytes (or its thumbnail's) from `offset`, `length` of them or to the end, within the
        open-download caps of the user and of the client `address` (when known)."""
        file = await self.get(caller, file_id)
        if thumbnail:
            if not file.has_thumbnail:
                raise NotFound(f"file {file_id} has no thumbnail", reason="THUMBNAIL_NOT_FOUND")
            return file, self._counted(
                caller.subject, address, self.store.read(file.thumbnail_key, offset, length or None)
            )
        if offset > file.size:
            raise past_the_end(offset, file.size)
        if offset == file.size:  # nothing to read: S3 would answer a range past the end with an error
            return file, _nothing()
        return file, self._counted(caller.subject, address, self.store.read(file.key, offset, length or None))

    async def _counted(self, owner: str, address: str, chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
        """The chunks, within the user's and the address's caps of open downloads. Counted from the first chunk
        asked for (a stream that never starts holds nothing) to the generator's close, which the caller makes
        prompt."""
        cap = self.limits.downloads_per_user
        try:
            if address:
                self._address_downloads.take(address)
        except QuotaExceeded:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()
            raise
        try:
            async for chunk in self._counted_for_user(owner, cap, chunks):
                yield chunk
        finally:
            if address:
                self._address_downloads.give_back(address)

    async def _counted_for_user(
        self, owner: str, cap: int, chunks: AsyncIterator[bytes]
    ) -> AsyncGenerator[bytes, None]:
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
        content_type = content_type.strip().lower()
        return await keyset_page(
            size,
            token,
            lambda before, n: self.files.page(caller.subject, before, n, content_type),
            lambda file: (file.created_at, file.id),
            scope=content_type,
        )

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
            "direct download URLs need S3 storage (DEVPYNODE_STORAGE_URL=s3://...); this server keeps files on "
            "local disk: use DownloadFile, or GET /download/v1/files/{id} through the gateway (with Range)",
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
