"""gRPC edge of the files service: protos in, domain calls, protos out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from devpynode.files.v1 import files_pb2, files_pb2_grpc

from pynode.core.errors import FieldViolation, InvalidArgument
from pynode.core.principal import current_client, current_principal
from pynode.core.timestamps import timestamp as _ts
from pynode.core.wire import LoneBytes, lone_bytes_parser
from pynode.files.domain import ACTIVE, COMPLETED, StoredFile, UploadSessionRecord
from pynode.files.ports import Chunk
from pynode.files.service import FilesService, UploadMetadata
from pynode.files.sessions import PART_SIZE, UploadSessions

_STATES = {
    ACTIVE: files_pb2.UPLOAD_SESSION_STATE_ACTIVE,
    COMPLETED: files_pb2.UPLOAD_SESSION_STATE_COMPLETED,
}


def session_proto(record: UploadSessionRecord) -> files_pb2.UploadSession:
    return files_pb2.UploadSession(
        id=str(record.id),
        metadata=files_pb2.FileMetadata(
            filename=record.filename,
            content_type=record.declared_type,
            size_bytes=record.size_bytes,
            sha256=record.sha256,
        ),
        received_bytes=record.received,
        state=_STATES.get(record.state, files_pb2.UPLOAD_SESSION_STATE_CANCELLED),
        created_at=_ts(record.created_at),
        expires_at=_ts(record.expires_at),
        file_id=str(record.file_id) if record.file_id else "",
        part_size=PART_SIZE,
    )


def file_proto(file: StoredFile) -> files_pb2.File:
    return files_pb2.File(
        id=str(file.id),
        filename=file.filename,
        content_type=file.content_type,
        size_bytes=file.size,
        sha256=file.sha256,
        created_at=_ts(file.created_at),
        inline=file.inline,
        declared_content_type=file.declared_type,
        has_thumbnail=file.has_thumbnail,
    )


def request_parsers() -> dict[str, Callable[[bytes], Any]]:
    """UploadFile's chunk messages read without a copy: the servicer gets a `LoneBytes` for each."""
    return {"UploadFile": lone_bytes_parser(files_pb2.UploadFileRequest, "chunk")}


_Upload = files_pb2.UploadFileRequest | LoneBytes  # a chunk message is a LoneBytes (request_parsers)


def _not_metadata(request: _Upload | None) -> bool:
    return request is None or isinstance(request, LoneBytes) or request.WhichOneof("data") != "metadata"


async def _chunks(requests: AsyncIterator[_Upload]) -> AsyncIterator[Chunk]:
    async for request in requests:
        if isinstance(request, LoneBytes):  # a chunk, as a view of the received message
            if request.data:
                yield request.data
            continue
        if request.WhichOneof("data") != "chunk":
            raise InvalidArgument(
                "only the first message carries metadata; the rest carry chunks",
                [FieldViolation("metadata", "only in the first message", "UNEXPECTED")],
            )
        chunk = request.chunk  # once: each read of a bytes field is a copy
        if chunk:
            yield chunk


class FileServicer(files_pb2_grpc.FileServiceServicer):
    """devpynode.files.v1.FileService."""

    def __init__(self, service: FilesService, sessions: UploadSessions) -> None:
        self._service = service
        self._sessions = sessions

    async def UploadFile(
        self,
        request_iterator: AsyncIterator[_Upload],
        context: grpc.aio.ServicerContext[files_pb2.UploadFileRequest, files_pb2.UploadFileResponse],
    ) -> files_pb2.UploadFileResponse:
        first = await anext(aiter(request_iterator), None)
        if _not_metadata(first):
            raise InvalidArgument(
                "the first message of an upload carries its metadata",
                [FieldViolation("metadata", "is required in the first message", "REQUIRED")],
            )
        assert isinstance(first, files_pb2.UploadFileRequest)
        given = first.metadata
        metadata = UploadMetadata(given.filename, given.content_type, given.size_bytes, given.sha256)
        stored = await self._service.upload(current_principal(), metadata, _chunks(request_iterator))
        return files_pb2.UploadFileResponse(file=file_proto(stored))

    async def DownloadFile(
        self,
        request: files_pb2.DownloadFileRequest,
        context: grpc.aio.ServicerContext[files_pb2.DownloadFileRequest, files_pb2.DownloadFileResponse],
    ) -> AsyncIterator[files_pb2.DownloadFileResponse]:
        thumbnail = request.variant == files_pb2.FILE_VARIANT_THUMBNAIL
        file, chunks = await self._service.download(
            current_principal(),
            request.file_id,
            request.offset,
            request.length,
            thumbnail=thumbnail,
            address=current_client().address,
        )
        async with contextlib.aclosing(chunks):  # a client that goes away frees the download's hold at once
            yield files_pb2.DownloadFileResponse(file=file_proto(file))
            async for chunk in chunks:
                yield files_pb2.DownloadFileResponse(chunk=chunk)

    async def ReadFileForUser(
        self,
        request: files_pb2.ReadFileForUserRequest,
        context: grpc.aio.ServicerContext[files_pb2.ReadFileForUserRequest, files_pb2.ReadFileForUserResponse],
    ) -> AsyncIterator[files_pb2.ReadFileForUserResponse]:
        thumbnail = request.variant == files_pb2.FILE_VARIANT_THUMBNAIL
        file, chunks = await self._service.read_for_user(
            current_principal(), request.file_id, request.user_id, thumbnail=thumbnail
        )
        yield files_pb2.ReadFileForUserResponse(file=file_proto(file))
        async for chunk in chunks:
            yield files_pb2.ReadFileForUserResponse(chunk=chunk)

    async def GetDownloadUrl(
        self,
        request: files_pb2.GetDownloadUrlRequest,
        context: grpc.aio.ServicerContext[files_pb2.GetDownloadUrlRequest, files_pb2.GetDownloadUrlResponse],
    ) -> files_pb2.GetDownloadUrlResponse:
        thumbnail = request.variant == files_pb2.FILE_VARIANT_THUMBNAIL
        url, expires = await self._service.download_url(current_principal(), request.file_id, thumbnail=thumbnail)
        return files_pb2.GetDownloadUrlResponse(url=url, expires_at=_ts(expires))

    async def GetFile(
        self,
        request: files_pb2.GetFileRequest,
        context: grpc.aio.ServicerContext[files_pb2.GetFileRequest, files_pb2.GetFileResponse],
    ) -> files_pb2.GetFileResponse:
        return files_pb2.GetFileResponse(file=file_proto(await self._service.get(current_principal(), request.file_id)))

    async def ListFiles(
        self,
        request: files_pb2.ListFilesRequest,
        context: grpc.aio.ServicerContext[files_pb2.ListFilesRequest, files_pb2.ListFilesResponse],
    ) -> files_pb2.ListFilesResponse:
        found, next_token = await self._service.list(
            current_principal(), request.page_size, request.page_token, request.content_type
        )
        return files_pb2.ListFilesResponse(files=[file_proto(f) for f in found], next_page_token=next_token)

    async def DeleteFile(
        self,
        request: files_pb2.DeleteFileRequest,
        context: grpc.aio.ServicerContext[files_pb2.DeleteFileRequest, files_pb2.DeleteFileResponse],
    ) -> files_pb2.DeleteFileResponse:
        await self._service.delete(current_principal(), request.file_id)
        return files_pb2.DeleteFileResponse()

    async def CreateUploadSession(
        self,
        request: files_pb2.CreateUploadSessionRequest,
        context: grpc.aio.ServicerContext[files_pb2.CreateUploadSessionRequest, files_pb2.CreateUploadSessionResponse],
    ) -> files_pb2.CreateUploadSessionResponse:
        given = request.metadata
        metadata = UploadMetadata(given.filename, given.content_type, given.size_bytes, given.sha256)
        record = await self._sessions.create(current_principal(), metadata)
        return files_pb2.CreateUploadSessionResponse(session=session_proto(record))

    async def UploadPart(
        self,
        request: files_pb2.UploadPartRequest,
        context: grpc.aio.ServicerContext[files_pb2.UploadPartRequest, files_pb2.UploadPartResponse],
    ) -> files_pb2.UploadPartResponse:
        record = await self._sessions.part(current_principal(), request.session_id, request.offset, request.data)
        return files_pb2.UploadPartResponse(session=session_proto(record))

    async def GetUploadSession(
        self,
        request: files_pb2.GetUploadSessionRequest,
        context: grpc.aio.ServicerContext[files_pb2.GetUploadSessionRequest, files_pb2.GetUploadSessionResponse],
    ) -> files_pb2.GetUploadSessionResponse:
        record = await self._sessions.get(current_principal(), request.session_id)
        return files_pb2.GetUploadSessionResponse(session=session_proto(record))

    async def CompleteUploadSession(
        self,
        request: files_pb2.CompleteUploadSessionRequest,
        context: grpc.aio.ServicerContext[
            files_pb2.CompleteUploadSessionRequest, files_pb2.CompleteUploadSessionResponse
        ],
    ) -> files_pb2.CompleteUploadSessionResponse:
        stored = await self._sessions.complete(current_principal(), request.session_id)
        return files_pb2.CompleteUploadSessionResponse(file=file_proto(stored))

    async def CancelUploadSession(
        self,
        request: files_pb2.CancelUploadSessionRequest,
        context: grpc.aio.ServicerContext[files_pb2.CancelUploadSessionRequest, files_pb2.CancelUploadSessionResponse],
    ) -> files_pb2.CancelUploadSessionResponse:
        await self._sessions.cancel(current_principal(), request.session_id)
        return files_pb2.CancelUploadSessionResponse()
