"""Where the files service's blocking work runs: each writer's own pipeline (a local upload's chunks queue on
its lane, each hashed and written in one piece of work, a bounded number of bytes behind), the process's named
pools, never the loop's default pool; the one content check; the minio calls that are not public API."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import io
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from devpynode.files.v1 import files_pb2, files_pb2_grpc
from minio import Minio
from PIL import Image

from pynode.core.errors import FailedPrecondition
from pynode.files.adapters import local_store
from pynode.files.adapters.local_store import PIPELINE_BYTES, LocalBlobStore
from pynode.files.content import ContentCheck, Declared
from pynode.files.lanes import Lane
from tests.client import MeshClient, fails
from tests.files.test_sessions import _create, _part

MIB = 1024 * 1024
FILES_CODE = str(Path(local_store.__file__).resolve().parents[1])


class DefaultPoolWatch(ThreadPoolExecutor):
    """The loop's default pool, noting each submission made from the files service's code."""

    def __init__(self) -> None:
        super().__init__(2, "default-pool")
        self.from_files: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        callers = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack() if f.filename.startswith(FILES_CODE)]
        if callers:
            self.from_files.append(callers[-1])
        return super().submit(fn, *args, **kwargs)


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 200), (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


def _requests(name: str, data: bytes, declared: str, **meta: Any) -> Iterator[files_pb2.UploadFileRequest]:
    yield files_pb2.UploadFileRequest(metadata=files_pb2.FileMetadata(filename=name, content_type=declared, **meta))
    for i in range(0, len(data), MIB):
        yield files_pb2.UploadFileRequest(chunk=data[i : i + MIB])


async def test_no_files_work_runs_on_the_loops_default_pool(client: MeshClient) -> None:
    await client.register()
    watch = DefaultPoolWatch()
    asyncio.get_running_loop().set_default_executor(watch)
    stub = files_pb2_grpc.FileServiceStub(client.channel)
    image = (await stub.UploadFile(_requests("p.png", _png(), "image/png"), metadata=client.md())).file
    assert image.has_thumbnail
    data = b"\x00devpynode test payload\x00" * (3 * MIB // 24)
    blob = (await stub.UploadFile(_requests("b.bin", data, "application/octet-stream"), metadata=client.md())).file
    call = stub.DownloadFile(files_pb2.DownloadFileRequest(file_id=blob.id), metadata=client.md())
    assert b"".join([p.chunk async for p in call]) == data
    session = await _create(client, data)
    for offset in range(0, len(data), MIB):
        await _part(client, session.id, offset, data[offset : offset + MIB])
    done = await stub.CompleteUploadSession(
        files_pb2.CompleteUploadSessionRequest(session_id=session.id), metadata=client.md()
    )
    assert done.file.sha256 == hashlib.sha256(data).hexdigest()
    await stub.DeleteFile(files_pb2.DeleteFileRequest(file_id=blob.id), metadata=client.md())
    wrong = _requests("w.bin", data, "application/octet-stream", sha256="0" * 64)  # refused: the writer aborts
    refused = await fails(stub.UploadFile(wrong, metadata=client.md()))
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert watch.from_files == []


async def test_a_local_upload_queues_its_chunks_on_its_lane_hashed_and_written_in_order_a_bounded_depth_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips: list[int] = []
    real_trip = Lane._trip

    def counted(lane: Lane) -> None:
        trips.append(1)
        real_trip(lane)

    monkeypatch.setattr(Lane, "_trip", counted)
    release = threading.Event()
    observed: list[tuple[bytes, str]] = []

    def observe(chunk: bytes | memoryview) -> None:
        release.wait(10)  # the lane's thread holds here: the chunks behind it wait in the queue
        observed.append((bytes(chunk), threading.current_thread().name))

    store = LocalBlobStore(tmp_path)
    size = 256 * 1024
    fits = PIPELINE_BYTES // size
    chunks = [bytes([i]) * size for i in range(fits + 2)]
    try:
        writer = store.begin("users/u/uploads/f", observe)
        for chunk in chunks[:fits]:
            await writer.write(chunk)  # each returns at once: the queue holds up to PIPELINE_BYTES
        blocked = asyncio.ensure_future(writer.write(chunks[fits]))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not blocked.done()  # the first chunk cannot finish before the release: the depth is bounded
        release.set()
        await blocked
        await writer.write(chunks[-1])
        await writer.commit()
    finally:
        release.set()
        store.close()
    assert [c for c, _ in observed] == chunks  # hashed in order, each in the trip that writes it
    assert all(name.startswith("files-lane-") for _, name in observed)
    assert len(trips) < len(chunks)  # a trip takes every chunk queued (up to its turn), not one each
    assert (tmp_path / "users/u/uploads/f").read_bytes() == b"".join(chunks)


async def test_the_content_check_refuses_a_type_as_soon_as_the_head_is_in() -> None:
    check = ContentCheck(Declared("text/plain", 0, ""), ("text/plain",), None)
    head = b"<!DOCTYPE html><html><body>" + b"x" * 9000
    with pytest.raises(FailedPrecondition) as refused:
        await check.see(head)
    assert refused.value.reason == "TYPE_NOT_ALLOWED"


def test_the_private_minio_calls_keep_their_signatures() -> None:
    """The S3 writer feeds multipart uploads part by part through minio calls that are not public API (the
    version is pinned): an upgrade that changes them fails here, not in production."""
    expected = {
        "_create_multipart_upload": ["self", "bucket_name", "object_name", "headers"],
        "_upload_part": ["self", "bucket_name", "object_name", "data", "headers", "upload_id", "part_number"],
        "_complete_multipart_upload": ["self", "bucket_name", "object_name", "upload_id", "parts", "ssec"],
        "_abort_multipart_upload": ["self", "bucket_name", "object_name", "upload_id"],
    }
    for name, parameters in expected.items():
        assert list(inspect.signature(getattr(Minio, name)).parameters) == parameters, name
