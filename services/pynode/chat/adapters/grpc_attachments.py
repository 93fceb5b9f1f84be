"""AttachmentReader over the files service's gRPC API."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import grpc
from devpynode.files.v1 import files_pb2, files_pb2_grpc

from pynode.chat.domain import Attachment
from pynode.core.peers import PeerClient, peer_error

# A metadata read: it should be quick, whatever the caller's own deadline allows.
GET_FILE_BUDGET_SECONDS = 5.0
# Reading a whole attachment (a member's download, or text given to the model).
READ_BUDGET_SECONDS = 600.0


def _attachment(file: files_pb2.File) -> Attachment:
    return Attachment(file.id, file.filename, file.content_type, file.size_bytes)


class GrpcAttachments(PeerClient):
    """GetFile with the caller's own token (files applies its own access rules); ReadFileForUser with
    this service's token for a member reading another member's attachment."""

    service = "files"

    async def attachment(self, file_id: str) -> Attachment:
        stub = files_pb2_grpc.FileServiceStub(self.channel)
        options = await self.options(as_user=True, budget_seconds=GET_FILE_BUDGET_SECONDS)
        response = await self.unary(stub.GetFile(files_pb2.GetFileRequest(file_id=file_id), **options))
        return _attachment(response.file)

    async def read(self, file_id: str, user_id: str) -> AsyncGenerator[Attachment | bytes, None]:
        stub = files_pb2_grpc.FileServiceStub(self.channel)
        options = await self.options(as_user=False, budget_seconds=READ_BUDGET_SECONDS)
        call = stub.ReadFileForUser(files_pb2.ReadFileForUserRequest(file_id=file_id, user_id=user_id), **options)
        try:
            async for response in call:
                if response.WhichOneof("data") == "file":
                    yield _attachment(response.file)
                else:
                    yield response.chunk
        except grpc.aio.AioRpcError as error:
            raise peer_error(error, self.service) from None
        finally:
            call.cancel()
