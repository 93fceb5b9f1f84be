"""BlobStore and Staging on S3 or MinIO, through the `minio` client (blocking: its calls run in the process's
`files-s3` pool of threads, never on the event loop).

An upload is an S3 multipart upload under the object's own key: parts of PART_BYTES go out as they fill (the
next fills while one is sent), and the object appears only when the upload is completed; `abort` aborts it,
so a failed, cancelled or refused upload leaves no object (an upload cut by a crash is invisible too, and the
bucket's lifecycle rule set at start aborts it after a day). A file smaller than one part is a single PUT at
commit.

Resumable sessions stage each part (1 MiB, the gRPC message bound) as its own object under
`.sessions/<id>/<offset>`; S3 needs parts of at least 5 MiB and cannot read back the parts of an unfinished
multipart upload, which the checksum, type and malware checks must. At completion the staged parts are read
once, checked, and written as the object's multipart upload; cancelling or expiring deletes them.

The minio client has no public call for a multipart upload fed part by part (its `put_object` wants a blocking
reader, a thread per upload for its whole length): `Multipart` names the four private calls used, in one place,
the `minio` version is pinned to the 7.2 series in pyproject.toml, and tests/files/test_s3_client.py fails when
their signatures change.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlparse

import urllib3
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.datatypes import Part
from minio.error import S3Error
from minio.lifecycleconfig import AbortIncompleteMultipartUpload, LifecycleConfig, Rule

from pynode.core import tracing
from pynode.core.errors import Unavailable
from pynode.core.executors import Executors
from pynode.core.settings import SettingsError
from pynode.files import pools
from pynode.files.domain import past_the_end
from pynode.files.ports import Chunk, Observer

log = logging.getLogger("pynode.files")

T = TypeVar("T")
CHUNK = 1024 * 1024
PART_BYTES = 8 * 1024 * 1024  # S3's minimum is 5 MiB (but for the last part)
THREADS = 16
SESSIONS = ".sessions/"
_HASH_IN_THREAD = 64 * 1024  # observing (hashing) a larger chunk on the loop would stall every other call


def _client(endpoint: str, access_key: str, secret_key: str, region: str) -> Minio:
    parsed = urlparse(endpoint)
    if not parsed.hostname:
        raise SettingsError("DEVPYNODE_S3_ENDPOINT_URL: required with s3:// storage (e.g. http://minio:9000)")
    host = parsed.netloc
    pool = urllib3.PoolManager(
        num_pools=4,
        maxsize=THREADS,
        timeout=urllib3.Timeout(connect=5.0, read=60.0),
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    return Minio(
        host,
        access_key=access_key,
        secret_key=secret_key,
        secure=parsed.scheme == "https",
        region=region,  # given, so presigning needs no request to learn it
        http_client=pool,
    )


class S3Objects:
    """The bucket and a pool of threads for the client's blocking calls."""

    def __init__(
        self,
        bucket: str,
        endpoint: str,
        access_key: str,
        secret_key: str,
        region: str,
        public_endpoint: str = "",
        executors: Executors | None = None,
    ) -> None:
        self.bucket = bucket
        self.client = _client(endpoint, access_key, secret_key, region)
        # Presigning is offline; a second client signs for the address browsers use.
        self.signer = _client(public_endpoint, access_key, secret_key, region) if public_endpoint else self.client
        self.multipart = Multipart(self.client)
        # The process's pool (closed by the app after every module), or one of its own (a tool's, a test's).
        self._own_pool = executors is None
        self.pool = pools.pool(executors, "files-s3", THREADS)

    async def call(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one blocking client call in the pool; a storage outage is UNAVAILABLE, never INTERNAL."""
        try:
            with tracing.span(f"S3 {getattr(work, '__name__', 'call')}", kind="client", **{"rpc.system": "s3"}):
                return await self.pool.run(work, *args, **kwargs)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(
                f"object storage is unreachable ({type(exc).__name__}); retry shortly", retry_after=1.0
            ) from None

    async def prepare(self) -> None:
        """Check the bucket (creating it when missing) and ask it to abort multipart uploads left for a day."""
        try:
            if not await self.call(self.client.bucket_exists, self.bucket):
                await self.call(self.client.make_bucket, self.bucket)
                log.info("created bucket %s", self.bucket)
        except S3Error as exc:
            raise SettingsError(f"DEVPYNODE_STORAGE_URL: bucket {self.bucket!r} is not usable ({exc.code})") from None
        except Unavailable:
            raise SettingsError("DEVPYNODE_S3_ENDPOINT_URL: cannot reach the object storage") from None
        rule = Rule(
            ENABLED,
            rule_filter=Filter(prefix=""),
            rule_id="devpynode-abort-incomplete-uploads",
            abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(days_after_initiation=1),
        )
        try:
            await self.call(self.client.set_bucket_lifecycle, self.bucket, LifecycleConfig([rule]))
        except S3Error as exc:  # a policy may forbid it: then it is the operator's to set
            log.warning("could not set the bucket's lifecycle rule for unfinished uploads (%s)", exc.code)

    async def close(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the pool's threads (after their calls end) when it is this object's own."""
        if self._own_pool:
            self.pool.executor.shutdown(wait=True, cancel_futures=True)


class Multipart:
    """The minio client's multipart calls, which it keeps private (see the module's docstring: pinned)."""

    def __init__(self, client: Minio) -> None:
        self._client = client

    def create(self, bucket: str, key: str) -> str:
        return self._client._create_multipart_upload(bucket, key, {"Content-Type": "application/octet-stream"})

    def upload_part(self, bucket: str, key: str, data: bytes, upload_id: str, number: int) -> str:
        return self._client._upload_part(bucket, key, data, None, upload_id, number)

    def complete(self, bucket: str, key: str, upload_id: str, parts: list[Part]) -> None:
        self._client._complete_multipart_upload(bucket, key, upload_id, parts)

    def abort(self, bucket: str, key: str, upload_id: str) -> None:
        self._client._abort_multipart_upload(bucket, key, upload_id)


class S3Writer:
    """One object being written as a multipart upload (or one PUT, when small): it owns its pipeline, one
    part in flight while the next fills."""

    def __init__(self, objects: S3Objects, key: str, observe: Observer | None = None) -> None:
        self._s3 = objects
        self._key = key
        self._observe = observe
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[Part] = []
        self._sending: asyncio.Future[None] | None = None
        self._done = False

    async def write(self, chunk: Chunk) -> None:
        if self._observe is not None:
            if len(chunk) >= _HASH_IN_THREAD:
                await self._s3.pool.run(self._observe, chunk)
            else:
                self._observe(chunk)
        self._buffer += chunk
        if len(self._buffer) >= PART_BYTES:
            data, self._buffer = bytes(self._buffer), bytearray()
            await self._wait()  # one part in flight while the next fills: memory stays at two parts
            # The part in flight is this writer's own: the next write, `drain`, `commit` or `abort` waits for it
            # (every upload ends in `commit` or `abort`), and its failure is the upload's.
            self._sending = asyncio.ensure_future(self._send(data))

    async def drain(self) -> None:
        await self._wait()

    async def _wait(self) -> None:
        if self._sending is not None:
            sending, self._sending = self._sending, None
            await sending

    async def _send(self, data: bytes) -> None:
        multipart = self._s3.multipart
        if self._upload_id is None:
            self._upload_id = await self._s3.call(multipart.create, self._s3.bucket, self._key)
        number = len(self._parts) + 1
        etag = await self._s3.call(multipart.upload_part, self._s3.bucket, self._key, data, self._upload_id, number)
        self._parts.append(Part(number, etag))

    async def commit(self) -> None:
        await self._wait()
        client = self._s3.client
        data, self._buffer = bytes(self._buffer), bytearray()
        if self._upload_id is None:
            await self._s3.call(
                client.put_object, self._s3.bucket, self._key, io.BytesIO(data), len(data), "application/octet-stream"
            )
        else:
            if data or not self._parts:
                await self._send(data)
            await self._s3.call(self._s3.multipart.complete, self._s3.bucket, self._key, self._upload_id, self._parts)
        self._done = True

    async def abort(self) -> None:
        if self._sending is not None:
            with contextlib.suppress(Exception):
                await self._wait()
        self._buffer = bytearray()
        if self._upload_id is not None and not self._done:
            upload_id, self._upload_id = self._upload_id, None
            with contextlib.suppress(S3Error, Unavailable):  # the bucket's lifecycle rule is the backstop
                await self._s3.call(self._s3.multipart.abort, self._s3.bucket, self._key, upload_id)


class S3BlobStore:
    """Objects in one bucket (keys as the seed's layout: users/{user_id}/uploads/{file_id})."""

    def __init__(self, objects: S3Objects) -> None:
        self.objects = objects

    def begin(self, key: str, observe: Observer | None = None) -> S3Writer:
        return S3Writer(self.objects, key, observe)

    async def read(self, key: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        s3 = self.objects
        if length == 0:
            return
        try:
            response = await s3.call(s3.client.get_object, s3.bucket, key, offset=offset, length=length or 0)
        except S3Error as exc:
            if exc.code != "InvalidRange":
                raise
            size = (await s3.call(s3.client.stat_object, s3.bucket, key)).size or 0
            if offset > size:
                raise past_the_end(offset, size) from None
            return  # at the end exactly: nothing to read
        # The next chunk is read in a thread while this one is sent (the read and the send overlap, rather than
        # taking turns); it is this generator's own future, awaited whatever ends the download.
        reader = response.stream(CHUNK)
        ahead: asyncio.Future[bytes] | None = None
        try:
            ahead = asyncio.ensure_future(s3.call(next, reader, b""))
            while chunk := await asyncio.shield(ahead):
                ahead = asyncio.ensure_future(s3.call(next, reader, b""))
                yield chunk
        finally:
            if ahead is not None and not ahead.done():
                await asyncio.wait([ahead])  # its thread still reads the response
            if ahead is not None and ahead.done() and not ahead.cancelled():
                ahead.exception()  # seen: the download's own error (if any) is already on its way
            response.close()
            response.release_conn()

    async def delete(self, key: str) -> None:
        await self.objects.call(self.objects.client.remove_object, self.objects.bucket, key)

    async def download_url(self, key: str, filename: str, content_type: str, seconds: int) -> str | None:
        s3 = self.objects
        headers = {
            # Always an attachment: an HTML or SVG file must never render on the storage's origin.
            "response-content-disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
            "response-content-type": content_type,
        }
        return await s3.call(
            s3.signer.presigned_get_object,
            s3.bucket,
            key,
            expires=timedelta(seconds=seconds),
            response_headers=headers,
        )


def _part_key(session_prefix: str, offset: int) -> str:
    return f"{session_prefix}{offset:020d}"


class S3StagedObject:
    """A session's staged parts, read in order and written as the object's multipart upload."""

    def __init__(self, store: S3BlobStore, prefix: str, length: int, key: str, observe: Observer | None) -> None:
        self._store = store
        self._prefix = prefix
        self._length = length
        self._writer = store.begin(key, observe)  # the writer observes each chunk as it takes it

    async def chunks(self) -> AsyncIterator[bytes]:
        s3 = self._store.objects
        names = await s3.call(_list_names, s3.client, s3.bucket, self._prefix)
        position = 0
        for name in names:
            if position >= self._length:
                break
            offset = int(name.rsplit("/", 1)[1])
            if offset != position:
                break  # a gap: the record's length below says what is missing
            async for chunk in self._store.read(name, 0, None):
                chunk = chunk[: self._length - position]
                position += len(chunk)
                await self._writer.write(chunk)
                yield chunk
        if position != self._length:
            raise Unavailable(
                f"the session's stored parts hold {position} of its {self._length} bytes; upload the rest again",
                reason="UPLOAD_PARTS_MISSING",
            )

    async def commit(self) -> None:
        await self._writer.commit()

    async def abort(self) -> None:
        await self._writer.abort()


def _list_names(client: Minio, bucket: str, prefix: str) -> list[str]:
    return sorted(o.object_name for o in client.list_objects(bucket, prefix=prefix, recursive=True) if o.object_name)


class S3Staging:
    """Upload sessions' parts as objects under `.sessions/<session id>/<offset>`."""

    def __init__(self, store: S3BlobStore) -> None:
        self._store = store

    @staticmethod
    def _prefix(session_id: Any) -> str:
        return f"{SESSIONS}{session_id.hex}/"

    async def write(self, session_id: Any, offset: int, data: bytes) -> None:
        s3 = self._store.objects
        prefix = self._prefix(session_id)
        # Parts at or past this offset were never recorded (a crash between storing and counting): they go.
        stale = [
            n for n in await s3.call(_list_names, s3.client, s3.bucket, prefix) if int(n.rsplit("/", 1)[1]) >= offset
        ]
        for name in stale:
            await s3.call(s3.client.remove_object, s3.bucket, name)
        await s3.call(
            s3.client.put_object,
            s3.bucket,
            _part_key(prefix, offset),
            io.BytesIO(data),
            len(data),
            "application/octet-stream",
        )

    def assemble(self, session_id: Any, length: int, key: str, observe: Observer | None = None) -> S3StagedObject:
        return S3StagedObject(self._store, self._prefix(session_id), length, key, observe)

    async def discard(self, session_id: Any) -> None:
        s3 = self._store.objects
        for name in await s3.call(_list_names, s3.client, s3.bucket, self._prefix(session_id)):
            await s3.call(s3.client.remove_object, s3.bucket, name)
