"""The files service over the peer client, as the client that called the door (its own `authorization`).

The files service's edge authenticates the token or personal API key and applies that user's access rules,
quota, size limit, type check and scan, exactly as for a gRPC client: the door only moves bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from devpynode.files.v1 import files_pb2, files_pb2_grpc

from pynode.core import deadlines
from pynode.core.peers import PeerClient, peer_error
from pynode.door.adapters.grpc_router import metadata_of
from pynode.door.ports import Caller

GET_BUDGET_SECONDS = 10.0
# A transfer lasts as long as the client reads or writes; the files service bounds its own work.
TRANSFER_BUDGET_SECONDS = 3600.0


class GrpcFiles(PeerClient):
    """FileService's GetFile, DownloadFile and UploadFile, as the client that called the door."""

    service = "files"

    async def get(self, caller: Caller, file_id: str) -> files_pb2.File:
        stub = files_pb2_grpc.FileServiceStub(self.channel)
        answer = await self.unary(
            stub.GetFile(
                files_pb2.GetFileRequest(file_id=file_id),
                metadata=metadata_of(caller),
                timeout=deadlines.outbound_timeout(GET_BUDGET_SECONDS),
            )
        )
        return answer.file

    async def download(self, caller: Caller, file_id: str, offset: int, length: int) -> AsyncIterator[bytes]:
        """The bytes; the first `anext` raises the service's refusal, before any byte (the file message)."""
        stub = files_pb2_grpc.FileServiceStub(self.channel)
        request = files_pb2.DownloadFileRequest(file_id=file_id, offset=offset, length=length)
        call = stub.DownloadFile(request, metadata=metadata_of(caller), timeout=TRANSFER_BUDGET_SECONDS)
        try:
            async for piece in call:
                if piece.WhichOneof("data") == "chunk":
                    yield piece.chunk
                else:
                    yield b""  # the file message: the service has accepted the download
        except grpc.aio.AioRpcError as error:
            raise peer_error(error, self.service) from None
        finally:
            call.cancel()  # the client hung up: the service's read ends and frees its hold at once

    async def upload(
        self, caller: Caller, metadata: files_pb2.FileMetadata, chunks: AsyncIterator[bytes]
    ) -> files_pb2.File:
        """Stream `chunks` into UploadFile; cancelled (the client hung up), the service stores nothing."""
        stub = files_pb2_grpc.FileServiceStub(self.channel)

        async def requests() -> AsyncIterator[files_pb2.UploadFileRequest]:
            yield files_pb2.UploadFileRequest(metadata=metadata)
            async for chunk in chunks:
                yield files_pb2.UploadFileRequest(chunk=chunk)

        call = stub.UploadFile(requests(), metadata=metadata_of(caller), timeout=TRANSFER_BUDGET_SECONDS)
        try:
            answer = await call
        except grpc.aio.AioRpcError as error:
            raise peer_error(error, self.service) from None
        finally:
            call.cancel()  # a no-op once answered; on cancellation, the service aborts the upload
        return answer.file
