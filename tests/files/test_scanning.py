"""Uploads scanned by a real clamd over INSTREAM: malware refused and not stored, clean files pass, an
unreachable scanner fails closed."""

from __future__ import annotations

import socket
from typing import Any

import grpc
from devpynode.files.v1 import files_pb2, files_pb2_grpc
from google.rpc import error_details_pb2

from tests.client import MeshClient, fails
from tests.files.conftest import EICAR, SIGNATURE

MIB = 1024 * 1024


def _requests(name: str, data: bytes) -> Any:
    yield files_pb2.UploadFileRequest(metadata=files_pb2.FileMetadata(filename=name, content_type="text/plain"))
    for i in range(0, len(data), MIB):
        yield files_pb2.UploadFileRequest(chunk=data[i : i + MIB])


async def test_malware_is_refused_by_stream_and_by_session_and_clean_files_pass(strict: Any, clamd: str) -> None:
    client: MeshClient = await strict(clamd_address=clamd)
    await client.register()
    stub = files_pb2_grpc.FileServiceStub(client.channel)
    error = await fails(stub.UploadFile(_requests("eicar.txt", EICAR), metadata=client.md()))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "MALWARE_DETECTED"
    assert error.detail(error_details_pb2.ErrorInfo).metadata["signature"].startswith(SIGNATURE)  # + .UNOFFICIAL
    clean = (await stub.UploadFile(_requests("notes.txt", b"nothing to see\n" * 200_000), metadata=client.md())).file
    assert clean.size_bytes == 15 * 200_000
    meta = files_pb2.FileMetadata(filename="e.txt", content_type="text/plain", size_bytes=len(EICAR))
    session = (
        await stub.CreateUploadSession(files_pb2.CreateUploadSessionRequest(metadata=meta), metadata=client.md())
    ).session
    await stub.UploadPart(
        files_pb2.UploadPartRequest(session_id=session.id, offset=0, data=EICAR), metadata=client.md()
    )
    completed = await fails(
        stub.CompleteUploadSession(files_pb2.CompleteUploadSessionRequest(session_id=session.id), metadata=client.md())
    )
    assert completed.reason == "MALWARE_DETECTED"
    listed = await stub.ListFiles(files_pb2.ListFilesRequest(), metadata=client.md())
    assert [f.filename for f in listed.files] == ["notes.txt"]


async def test_an_unreachable_scanner_fails_closed(strict: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    client: MeshClient = await strict(clamd_address=f"127.0.0.1:{port}")
    await client.register()
    stub = files_pb2_grpc.FileServiceStub(client.channel)
    error = await fails(stub.UploadFile(_requests("a.txt", b"hello\n"), metadata=client.md()))
    assert error.code == grpc.StatusCode.UNAVAILABLE and error.reason == "SCANNER_UNAVAILABLE"
    assert not (await stub.ListFiles(files_pb2.ListFilesRequest(), metadata=client.md())).files
