"""Streamed uploads and downloads on local storage: nothing half-stored, nothing leaked, nothing trusted."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from devpynode.files.v1 import files_pb2, files_pb2_grpc
from google.rpc import error_details_pb2

from pynode.app.server import MeshServer
from pynode.files.module import FilesComponents
from pynode.files.service import FilesService
from tests.client import PASSWORD, MeshClient, eventually, fails, new_email
from tests.conftest import auth_of
from tests.storage import is_s3, open_uploads, stored_objects

MIB = 1024 * 1024


def payload(size: int) -> bytes:
    """Random bytes that no content sniffer takes for a known format (pure randomness sometimes looks like
    zlib or a sound file to libmagic, and the allowlist would refuse it)."""
    marker = b"\x00devpynode test payload\x00"
    return (marker + os.urandom(size))[:size]


HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>\n"


def _service(mesh: MeshServer) -> FilesService:
    parts = mesh.platform.component("files")
    assert isinstance(parts, FilesComponents)
    return parts.service


def _requests(
    name: str, data: bytes, declared: str = "application/octet-stream", chunk_size: int = MIB, **meta: Any
) -> Iterator[Any]:
    yield files_pb2.UploadFileRequest(metadata=files_pb2.FileMetadata(filename=name, content_type=declared, **meta))
    for i in range(0, len(data), chunk_size):
        yield files_pb2.UploadFileRequest(chunk=data[i : i + chunk_size])


def _stub(client: MeshClient) -> files_pb2_grpc.FileServiceStub:
    return files_pb2_grpc.FileServiceStub(client.channel)


def _stored_objects(mesh: MeshServer) -> list[str]:
    return stored_objects(mesh)


async def _download(client: MeshClient, file_id: str, **options: Any) -> tuple[files_pb2.File, bytes]:
    call = _stub(client).DownloadFile(files_pb2.DownloadFileRequest(file_id=file_id, **options), metadata=client.md())
    pieces = [piece async for piece in call]
    assert pieces and pieces[0].WhichOneof("data") == "file"
    return pieces[0].file, b"".join(p.chunk for p in pieces[1:])


async def test_upload_and_download_round_trip_with_ranges(client: MeshClient) -> None:
    await client.register()
    data = payload(2 * MIB + 123)
    digest = hashlib.sha256(data).hexdigest()
    stored = (
        await _stub(client).UploadFile(
            _requests("blob.bin", data, size_bytes=len(data), sha256=digest), metadata=client.md()
        )
    ).file
    assert (stored.size_bytes, stored.sha256, stored.content_type) == (len(data), digest, "application/octet-stream")
    file, body = await _download(client, stored.id)
    assert file.id == stored.id and body == data
    _, part = await _download(client, stored.id, offset=MIB - 10, length=20)
    assert part == data[MIB - 10 : MIB + 10]
    _, tail = await _download(client, stored.id, offset=len(data) - 5)
    assert tail == data[-5:]
    past = await fails(_download(client, stored.id, offset=len(data) + 1))
    assert past.code == grpc.StatusCode.INVALID_ARGUMENT and past.violations() == {"offset": "OUT_OF_RANGE"}


@pytest.mark.parametrize(
    ("meta", "field", "reason"),
    [
        ({"sha256": "0" * 64}, "metadata.sha256", "CHECKSUM_MISMATCH"),
        ({"size_bytes": 999}, "metadata.size_bytes", "SIZE_MISMATCH"),
        ({"sha256": "not-hex"}, "metadata.sha256", "BAD_FORMAT"),
    ],
)
async def test_a_mismatch_stores_nothing(
    client: MeshClient, mesh: MeshServer, meta: dict[str, Any], field: str, reason: str
) -> None:
    await client.register()
    before = _stored_objects(mesh)
    error = await fails(
        _stub(client).UploadFile(_requests("x.txt", b"plain text line\n" * 100, **meta), metadata=client.md())
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.violations() == {field: reason}
    listed = await _stub(client).ListFiles(files_pb2.ListFilesRequest(), metadata=client.md())
    assert not listed.files and _stored_objects(mesh) == before


async def test_size_limit_and_quota_stop_the_upload_at_the_crossing_chunk(strict: Any) -> None:
    client: MeshClient = await strict(files_max_bytes=3 * MIB, files_quota_bytes=4 * MIB)
    await client.register()
    stub = _stub(client)
    too_big = await fails(stub.UploadFile(_requests("big.bin", payload(5 * MIB)), metadata=client.md()))
    assert too_big.code == grpc.StatusCode.RESOURCE_EXHAUSTED and too_big.reason == "FILE_TOO_LARGE"
    assert too_big.detail(error_details_pb2.QuotaFailure).violations[0].subject == "files:max_bytes"
    await stub.UploadFile(_requests("first.bin", payload(3 * MIB)), metadata=client.md())
    over = await fails(stub.UploadFile(_requests("second.bin", payload(2 * MIB)), metadata=client.md()))
    assert over.code == grpc.StatusCode.RESOURCE_EXHAUSTED and over.reason == "QUOTA_EXCEEDED"
    declared = await fails(stub.UploadFile(_requests("third.bin", b"x", size_bytes=2 * MIB), metadata=client.md()))
    assert declared.reason == "QUOTA_EXCEEDED"  # refused before any byte is sent
    listed = await stub.ListFiles(files_pb2.ListFilesRequest(), metadata=client.md())
    assert [f.filename for f in listed.files] == ["first.bin"]


async def test_a_cancelled_upload_leaves_no_row_and_no_object(client: MeshClient, mesh: MeshServer) -> None:
    await client.register()
    before = _stored_objects(mesh)
    sent = asyncio.Event()

    async def slow() -> Any:
        yield files_pb2.UploadFileRequest(metadata=files_pb2.FileMetadata(filename="c.bin", content_type="x/y"))
        yield files_pb2.UploadFileRequest(chunk=payload(MIB))
        sent.set()
        await asyncio.sleep(30)

    call = _stub(client).UploadFile(slow(), metadata=client.md())
    await sent.wait()
    await asyncio.sleep(0.3)  # the first chunk is on disk, under a temporary name
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    for _ in range(50):
        if _stored_objects(mesh) == before:
            break
        await asyncio.sleep(0.05)
    assert _stored_objects(mesh) == before
    await eventually(lambda: open_uploads(mesh) == 0)  # S3: the multipart upload was aborted
    listed = await _stub(client).ListFiles(files_pb2.ListFilesRequest(), metadata=client.md())
    assert not listed.files


async def test_names_are_display_names_only(client: MeshClient, mesh: MeshServer) -> None:
    await client.register()
    cases = {
        "../../etc/passwd": "passwd",
        "..\\..\\windows\\system.ini": "system.ini",
        "re\u202eport\x07.txt": "report.txt",
        "..": "file",
        "dir/" + "a" * 240 + ".pdf": "a" * 240 + ".pdf",
    }
    for raw, shown in cases.items():
        stored = (await _stub(client).UploadFile(_requests(raw, b"some text\n"), metadata=client.md())).file
        assert stored.filename == shown
    # Names never reach the storage's keys: every object sits at users/<id>/(uploads|thumbnails)/<id>.
    layout = re.compile(r"users/[0-9a-f-]{36}/(uploads|thumbnails)/[0-9a-f-]{36}")
    assert all(layout.fullmatch(key) for key in _stored_objects(mesh))
    too_long = await fails(_stub(client).UploadFile(_requests("a" * 300, b"x\n"), metadata=client.md()))
    assert too_long.violations() == {"metadata.filename": "TOO_LONG"}


async def test_the_declared_type_is_only_a_hint_and_active_content_never_inline(client: MeshClient) -> None:
    await client.register()
    spoofed = (await _stub(client).UploadFile(_requests("cat.png", HTML, "image/png"), metadata=client.md())).file
    assert spoofed.content_type == "text/html" and not spoofed.inline
    assert spoofed.declared_content_type == "image/png"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>'
    stored_svg = (await _stub(client).UploadFile(_requests("a.svg", svg, "image/svg+xml"), metadata=client.md())).file
    assert stored_svg.content_type == "image/svg+xml" and not stored_svg.inline
    text = (
        await _stub(client).UploadFile(_requests("notes.txt", b"plain words\n", "text/plain"), metadata=client.md())
    ).file
    assert text.content_type == "text/plain" and text.inline
    csv = (await _stub(client).UploadFile(_requests("t.csv", b"a,b\n1,2\n", "text/csv"), metadata=client.md())).file
    assert csv.content_type == "text/csv"


async def test_types_outside_the_allowlist_are_refused(strict: Any) -> None:
    client: MeshClient = await strict(files_allowed_types="image/*,text/plain")
    await client.register()
    error = await fails(_stub(client).UploadFile(_requests("page.html", HTML, "text/plain"), metadata=client.md()))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "TYPE_NOT_ALLOWED"
    await _stub(client).UploadFile(_requests("ok.txt", b"just text\n", "text/plain"), metadata=client.md())


async def test_other_users_ids_are_not_found_on_every_rpc_and_admins_can_read(
    client: MeshClient, mesh: MeshServer
) -> None:
    await client.register()
    mine = (await _stub(client).UploadFile(_requests("mine.txt", b"private\n"), metadata=client.md())).file
    other = client.as_other_address()
    await other.register()
    stub = _stub(other)
    for call in (
        stub.GetFile(files_pb2.GetFileRequest(file_id=mine.id), metadata=other.md()),
        stub.DeleteFile(files_pb2.DeleteFileRequest(file_id=mine.id), metadata=other.md()),
        _download(other, mine.id),
    ):
        error = await fails(call)
        assert error.code == grpc.StatusCode.NOT_FOUND and error.reason == "FILE_NOT_FOUND"
    missing = await fails(
        stub.GetFile(
            files_pb2.GetFileRequest(file_id=str(uuid.uuid4())),
            metadata=other.md(),
        )
    )
    assert missing.code == grpc.StatusCode.NOT_FOUND and missing.message.startswith("no file")
    assert not (await stub.ListFiles(files_pb2.ListFilesRequest(), metadata=other.md())).files
    email = new_email()
    await auth_of(mesh).service.create_admin(email, PASSWORD, "Admin")
    admin = client.as_other_address()
    await admin.login(email)
    _, body = await _download(admin, mine.id)
    assert body == b"private\n"


async def test_delete_removes_row_and_bytes_and_lists_page_newest_first(client: MeshClient, mesh: MeshServer) -> None:
    await client.register()
    stub = _stub(client)
    ids = [
        (await stub.UploadFile(_requests(f"f{i}.txt", b"text %d\n" % i), metadata=client.md())).file.id
        for i in range(5)
    ]
    seen, token = [], ""
    while True:
        page = await stub.ListFiles(files_pb2.ListFilesRequest(page_size=2, page_token=token), metadata=client.md())
        seen.extend(f.id for f in page.files)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))
    before = len(_stored_objects(mesh))
    await stub.DeleteFile(files_pb2.DeleteFileRequest(file_id=ids[0]), metadata=client.md())
    assert len(_stored_objects(mesh)) == before - 1
    gone = await fails(stub.GetFile(files_pb2.GetFileRequest(file_id=ids[0]), metadata=client.md()))
    assert gone.code == grpc.StatusCode.NOT_FOUND


async def test_metadata_must_come_first_and_only_first(client: MeshClient) -> None:
    await client.register()
    stub = _stub(client)
    no_meta = await fails(stub.UploadFile(iter([files_pb2.UploadFileRequest(chunk=b"x")]), metadata=client.md()))
    assert no_meta.code == grpc.StatusCode.INVALID_ARGUMENT
    meta = files_pb2.UploadFileRequest(metadata=files_pb2.FileMetadata(filename="a", content_type="text/plain"))
    twice = await fails(stub.UploadFile(iter([meta, meta]), metadata=client.md()))
    assert twice.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_chunk_over_the_contracts_mib_is_refused_whichever_parser_reads_it(client: MeshClient) -> None:
    # Chunk messages are read from the wire without protobuf (core.wire) only within the contract's size.
    await client.register()
    meta = files_pb2.UploadFileRequest(
        metadata=files_pb2.FileMetadata(filename="big.bin", content_type="application/octet-stream")
    )
    big = files_pb2.UploadFileRequest(chunk=b"x" * (MIB + 1))
    error = await fails(_stub(client).UploadFile(iter([meta, big]), metadata=client.md()))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.violations() == {"chunk": "TOO_LONG"}


async def test_an_upload_refused_before_its_end_is_answered_with_the_servers_status(client: MeshClient) -> None:
    # Found by the fuzzer (forged token, real set): the server refused before reading the chunks and answered
    # UNAUTHENTICATED; grpcio's asyncio client turned a few answers in a hundred into INTERNAL when a chunk write
    # was still in flight (pynode.core.client_streams). 400 calls: without the fix some of them fail this test.
    await client.register()
    forged = client.md(client.token[:-6] + "AAAAAA")
    chunks = list(_requests("refused.bin", payload(2 * MIB), chunk_size=256 * 1024))
    codes: dict[str, int] = {}

    async def refused() -> None:
        error = await fails(_stub(client).UploadFile(iter(chunks), metadata=forged))
        key = f"{error.code.name}:{error.reason if error.code == grpc.StatusCode.UNAUTHENTICATED else error.message}"
        codes[key] = codes.get(key, 0) + 1

    for _ in range(50):
        await asyncio.gather(*(refused() for _ in range(8)))
    assert codes == {"UNAUTHENTICATED:INVALID_TOKEN": 400}


async def test_a_crash_leaves_only_a_temporary_file_which_the_next_start_removes(mesh: MeshServer) -> None:
    store = _service(mesh).store
    if is_s3(mesh):
        # On S3 a crashed upload is a multipart upload never completed: invisible, and aborted by the
        # bucket's lifecycle rule. Begin one and walk away: nothing shows.
        before = _stored_objects(mesh)
        writer = store.begin("users/crashed/uploads/" + str(uuid.uuid4()))
        await writer.write(payload(9 * MIB))  # past one part: the multipart upload exists
        await asyncio.sleep(0.5)
        assert _stored_objects(mesh) == before and open_uploads(mesh) >= 1
        await writer.abort()
        assert open_uploads(mesh) == 0
        return
    leftover = store.root / ".partial" / "crashed-upload"  # type: ignore[attr-defined]
    leftover.write_bytes(b"half an upload")
    old = time.time() - 7200
    os.utime(leftover, (old, old))
    assert store.sweep_partials() >= 1  # type: ignore[attr-defined]
    assert not leftover.exists()


async def test_list_files_filters_by_type_and_family(client: MeshClient) -> None:
    await client.register()
    stub = _stub(client)
    await stub.UploadFile(_requests("a.txt", b"words\n", "text/plain"), metadata=client.md())
    await stub.UploadFile(_requests("b.csv", b"a,b\n1,2\n", "text/csv"), metadata=client.md())
    await stub.UploadFile(_requests("c.bin", payload(4096)), metadata=client.md())

    async def names(kind: str) -> list[str]:
        found = await stub.ListFiles(files_pb2.ListFilesRequest(content_type=kind), metadata=client.md())
        return [f.filename for f in found.files]

    assert await names("text/csv") == ["b.csv"]
    assert await names("text/*") == ["b.csv", "a.txt"]
    assert await names("image/*") == []
    page = await stub.ListFiles(files_pb2.ListFilesRequest(page_size=1, content_type="text/*"), metadata=client.md())
    switched = await fails(
        stub.ListFiles(
            files_pb2.ListFilesRequest(page_size=1, page_token=page.next_page_token, content_type="image/*"),
            metadata=client.md(),
        )
    )
    assert switched.violations() == {"page_token": "BAD_PAGE_TOKEN"}


async def test_a_service_reads_a_users_file_for_that_user_only(client: MeshClient, mesh: MeshServer) -> None:
    from devpynode.auth.v1 import auth_pb2

    registered = await client.register()
    mine = (await _stub(client).UploadFile(_requests("shared.txt", b"for the chat\n"), metadata=client.md())).file
    secret = mesh.platform.settings.mesh.service_secret.get_secret_value()
    issued = await client.auth.IssueServiceToken(
        # From this machine (no x-forwarded-for): dev mode takes its well-known secret from loopback only.
        auth_pb2.IssueServiceTokenRequest(service_name="chat", service_secret=secret)
    )
    service = [("authorization", f"Bearer {issued.access_token}")]

    async def read(user_id: str, md: Any) -> bytes:
        call = _stub(client).ReadFileForUser(
            files_pb2.ReadFileForUserRequest(file_id=mine.id, user_id=user_id), metadata=md
        )
        pieces = [p async for p in call]
        return b"".join(p.chunk for p in pieces[1:])

    assert await read(registered.user.id, service) == b"for the chat\n"
    other = client.as_other_address()
    stranger = await other.register()
    denied = await fails(read(stranger.user.id, service))
    assert denied.code == grpc.StatusCode.NOT_FOUND
    as_user = await fails(read(registered.user.id, client.md()))  # users cannot call it, not even for themselves
    assert as_user.code == grpc.StatusCode.PERMISSION_DENIED


async def test_download_urls_are_presigned_attachments_on_s3_and_explained_on_local_disk(
    client: MeshClient, mesh: MeshServer
) -> None:
    await client.register()
    stored = (await _stub(client).UploadFile(_requests("page.html", HTML, "text/html"), metadata=client.md())).file
    request = files_pb2.GetDownloadUrlRequest(file_id=stored.id)
    if is_s3(mesh):
        answer = await _stub(client).GetDownloadUrl(request, metadata=client.md())
        lifetime = answer.expires_at.seconds - time.time()
        assert 800 < lifetime <= 900
        async with httpx.AsyncClient() as http:
            fetched = await http.get(answer.url)
        assert fetched.status_code == 200 and fetched.content == HTML
        # Never shown in place, whatever the type: an HTML file must not run on the storage's origin.
        assert fetched.headers["content-disposition"].startswith("attachment;")
        assert "page.html" in fetched.headers["content-disposition"]
        async with httpx.AsyncClient() as http:
            forged = await http.get(answer.url.replace(stored.id, str(uuid.uuid4())))
        assert forged.status_code == 403  # the signature covers the key
    else:
        error = await fails(_stub(client).GetDownloadUrl(request, metadata=client.md()))
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "DOWNLOAD_URL_UNAVAILABLE"
        assert "DownloadFile" in error.message
    other = client.as_other_address()
    await other.register()
    hidden = await fails(_stub(other).GetDownloadUrl(request, metadata=other.md()))
    assert hidden.code == grpc.StatusCode.NOT_FOUND


async def test_forged_page_tokens_are_invalid_arguments(client: MeshClient) -> None:
    from pynode.core.paging import encode_token

    await client.register()
    for position in (
        {"t": "2026-01-01T00:00:00", "i": str(uuid.uuid4()), "f": ""},  # a time without its zone
        {"t": "yesterday", "i": str(uuid.uuid4()), "f": ""},
        {"t": "2026-01-01T00:00:00+00:00", "i": "not-a-uuid", "f": ""},
    ):
        request = files_pb2.ListFilesRequest(page_token=encode_token(position))
        error = await fails(_stub(client).ListFiles(request, metadata=client.md()))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, position
