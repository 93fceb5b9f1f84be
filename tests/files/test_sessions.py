"""Resumable upload sessions: offsets, resume after a restart, completion checks, cancel, expiry, ownership."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import grpc
from devpynode.files.v1 import files_pb2, files_pb2_grpc
from google.rpc import error_details_pb2

from pynode.app.server import MeshServer
from pynode.files.module import FilesComponents
from tests.backends import Backend
from tests.client import MeshClient, fails, new_email
from tests.conftest import make_settings, start_mesh
from tests.storage import staged

MIB = 1024 * 1024


def payload(size: int) -> bytes:
    """Random bytes that no content sniffer takes for a known format (pure randomness sometimes looks like
    zlib or a sound file to libmagic, and the allowlist would refuse it)."""
    marker = b"\x00devpynode test payload\x00"
    return (marker + os.urandom(size))[:size]


def _stub(client: MeshClient) -> files_pb2_grpc.FileServiceStub:
    return files_pb2_grpc.FileServiceStub(client.channel)


def _parts(mesh: MeshServer) -> FilesComponents:
    parts = mesh.platform.component("files")
    assert isinstance(parts, FilesComponents)
    return parts


async def _create(client: MeshClient, data: bytes, *, declare: bool = True, sha: str | None = None) -> Any:
    metadata = files_pb2.FileMetadata(
        filename="big.bin",
        content_type="application/octet-stream",
        size_bytes=len(data) if declare else 0,
        sha256=hashlib.sha256(data).hexdigest() if sha is None else sha,
    )
    response = await _stub(client).CreateUploadSession(
        files_pb2.CreateUploadSessionRequest(metadata=metadata), metadata=client.md()
    )
    return response.session


async def _part(client: MeshClient, session_id: str, offset: int, data: bytes) -> Any:
    request = files_pb2.UploadPartRequest(session_id=session_id, offset=offset, data=data)
    return (await _stub(client).UploadPart(request, metadata=client.md())).session


async def test_parts_at_the_right_offset_make_the_file(client: MeshClient) -> None:
    await client.register()
    data = payload(2 * MIB + 5)
    session = await _create(client, data)
    assert session.part_size == MIB and session.received_bytes == 0
    assert session.state == files_pb2.UPLOAD_SESSION_STATE_ACTIVE
    await _part(client, session.id, 0, data[:MIB])
    wrong = await fails(_part(client, session.id, 0, data[:MIB]))  # a retried part that did arrive
    assert wrong.code == grpc.StatusCode.FAILED_PRECONDITION and wrong.reason == "OFFSET_MISMATCH"
    info = wrong.detail(error_details_pb2.ErrorInfo)
    assert info.metadata["received_bytes"] == str(MIB)
    got = await _stub(client).GetUploadSession(
        files_pb2.GetUploadSessionRequest(session_id=session.id), metadata=client.md()
    )
    assert got.session.received_bytes == MIB
    await _part(client, session.id, MIB, data[MIB : 2 * MIB])
    early = await fails(
        _stub(client).CompleteUploadSession(
            files_pb2.CompleteUploadSessionRequest(session_id=session.id), metadata=client.md()
        )
    )
    assert early.reason == "UPLOAD_INCOMPLETE"
    await _part(client, session.id, 2 * MIB, data[2 * MIB :])
    done = await _stub(client).CompleteUploadSession(
        files_pb2.CompleteUploadSessionRequest(session_id=session.id), metadata=client.md()
    )
    assert done.file.size_bytes == len(data) and done.file.sha256 == hashlib.sha256(data).hexdigest()
    call = _stub(client).DownloadFile(files_pb2.DownloadFileRequest(file_id=done.file.id), metadata=client.md())
    body = b"".join([p.chunk async for p in call])
    assert body == data
    after = await _stub(client).GetUploadSession(
        files_pb2.GetUploadSessionRequest(session_id=session.id), metadata=client.md()
    )
    assert after.session.state == files_pb2.UPLOAD_SESSION_STATE_COMPLETED and after.session.file_id == done.file.id


async def test_a_session_survives_a_restart(backend: Backend, tmp_path: Path) -> None:
    settings = make_settings(
        backend, tmp_path, **({"database_url": backend.database_url} if backend.database_url else {})
    )
    data = payload(MIB + 10)
    first = await start_mesh(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            client = MeshClient(channel)
            email = new_email()
            await client.register(email)
            session = await _create(client, data)
            await _part(client, session.id, 0, data[:MIB])
    finally:
        await first.stop(0)
    second = await start_mesh(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            client = MeshClient(channel, client.address)
            await client.login(email)  # embedded sign-in sessions live in memory: a restart ends them
            resumed = await _stub(client).GetUploadSession(
                files_pb2.GetUploadSessionRequest(session_id=session.id), metadata=client.md()
            )
            assert resumed.session.received_bytes == MIB
            await _part(client, session.id, MIB, data[MIB:])
            done = await _stub(client).CompleteUploadSession(
                files_pb2.CompleteUploadSessionRequest(session_id=session.id), metadata=client.md()
            )
            assert done.file.size_bytes == len(data)
    finally:
        await second.stop(0)


async def test_a_wrong_checksum_at_completion_discards_the_session(client: MeshClient, mesh: MeshServer) -> None:
    await client.register()
    data = b"some text content\n" * 10
    session = await _create(client, data, sha="0" * 64)
    await _part(client, session.id, 0, data)
    error = await fails(
        _stub(client).CompleteUploadSession(
            files_pb2.CompleteUploadSessionRequest(session_id=session.id), metadata=client.md()
        )
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.violations() == {
        "metadata.sha256": "CHECKSUM_MISMATCH"
    }
    assert not (await _stub(client).ListFiles(files_pb2.ListFilesRequest(), metadata=client.md())).files
    for _ in range(50):
        state = await _stub(client).GetUploadSession(
            files_pb2.GetUploadSessionRequest(session_id=session.id), metadata=client.md()
        )
        if state.session.state == files_pb2.UPLOAD_SESSION_STATE_CANCELLED:
            break
        await asyncio.sleep(0.02)
    assert state.session.state == files_pb2.UPLOAD_SESSION_STATE_CANCELLED


async def test_cancel_discards_and_parts_past_the_declared_size_are_refused(
    client: MeshClient, mesh: MeshServer
) -> None:
    await client.register()
    data = b"0123456789" * 100
    session = await _create(client, data)
    past = await fails(_part(client, session.id, 0, data + b"x"))
    assert past.violations() == {"data": "SIZE_MISMATCH"}
    await _part(client, session.id, 0, data[:500])
    assert staged(mesh, session.id)
    await _stub(client).CancelUploadSession(
        files_pb2.CancelUploadSessionRequest(session_id=session.id), metadata=client.md()
    )
    assert not staged(mesh, session.id)
    refused = await fails(_part(client, session.id, 500, data[500:]))
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION and refused.reason == "UPLOAD_SESSION_NOT_ACTIVE"


async def test_abandoned_sessions_expire_and_are_swept(strict: Any) -> None:
    client: MeshClient = await strict(files_session_hours=0.0002)  # under a second
    mesh: MeshServer = strict.servers[-1]
    await client.register()
    session = await _create(client, b"abc" * 10)
    await _part(client, session.id, 0, b"abc")
    await asyncio.sleep(1.0)
    refused = await fails(_part(client, session.id, 3, b"abc"))
    assert refused.reason == "UPLOAD_SESSION_NOT_ACTIVE"
    assert await _parts(mesh).sessions.sweep() == 1
    assert not staged(mesh, session.id)


async def test_other_users_sessions_are_not_found(client: MeshClient) -> None:
    await client.register()
    session = await _create(client, b"mine" * 4)
    other = client.as_other_address()
    await other.register()
    stub = _stub(other)
    for call in (
        stub.GetUploadSession(files_pb2.GetUploadSessionRequest(session_id=session.id), metadata=other.md()),
        stub.UploadPart(files_pb2.UploadPartRequest(session_id=session.id, offset=0, data=b"x"), metadata=other.md()),
        stub.CompleteUploadSession(files_pb2.CompleteUploadSessionRequest(session_id=session.id), metadata=other.md()),
        stub.CancelUploadSession(files_pb2.CancelUploadSessionRequest(session_id=session.id), metadata=other.md()),
    ):
        error = await fails(call)
        assert error.code == grpc.StatusCode.NOT_FOUND and error.reason == "UPLOAD_SESSION_NOT_FOUND"


async def test_declared_sizes_are_reserved_against_the_quota(strict: Any) -> None:
    client: MeshClient = await strict(files_quota_bytes=4 * MIB)
    await client.register()
    meta = files_pb2.FileMetadata(filename="a.bin", content_type="application/octet-stream", size_bytes=3 * MIB)
    stub = _stub(client)
    await stub.CreateUploadSession(files_pb2.CreateUploadSessionRequest(metadata=meta), metadata=client.md())
    second = await fails(
        stub.CreateUploadSession(files_pb2.CreateUploadSessionRequest(metadata=meta), metadata=client.md())
    )
    assert second.code == grpc.StatusCode.RESOURCE_EXHAUSTED and second.reason == "QUOTA_EXCEEDED"
