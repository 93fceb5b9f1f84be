"""AttachmentReader over the files service's gRPC API, acting as the end user."""

from __future__ import annotations

from devpynode.files.v1 import files_pb2, files_pb2_grpc

from pynode.chat.ports import Attachment
from pynode.core.peers import PeerClient

# A metadata read: it should be quick, whatever the caller's own deadline allows.
GET_FILE_BUDGET_SECONDS = 5.0


class GrpcAttachments(PeerClient):
    """FileService.GetFile with the caller's own token: files applies its own access rules."""

    service = "files"

    async def attachment(self, file_id: str) -> Attachment:
        stub = files_pb2_grpc.FileServiceStub(self.channel)
        options = await self.options(as_user=True, budget_seconds=GET_FILE_BUDGET_SECONDS)
        response = await self.unary(stub.GetFile(files_pb2.GetFileRequest(file_id=file_id), **options))
        file = response.file
        return Attachment(file.id, file.filename, file.content_type, file.size_bytes)
