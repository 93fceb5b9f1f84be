"""PictureFiles over the files service's gRPC API (ReadFileForUser with this service's token)."""

from __future__ import annotations

import grpc
from devpynode.files.v1 import files_pb2, files_pb2_grpc

from pynode.core.errors import FieldViolation, InvalidArgument
from pynode.core.peers import PeerClient, peer_error

READ_BUDGET_SECONDS = 30.0


class GrpcPictureFiles(PeerClient):
    """Reads a picture a user may read, stopping as soon as it is larger than allowed."""

    service = "files"

    async def read(self, file_id: str, user_id: str, limit: int) -> bytes:
        stub = files_pb2_grpc.FileServiceStub(self.channel)
        options = await self.options(as_user=False, budget_seconds=READ_BUDGET_SECONDS)
        call = stub.ReadFileForUser(files_pb2.ReadFileForUserRequest(file_id=file_id, user_id=user_id), **options)
        data = bytearray()
        try:
            async for response in call:
                if response.WhichOneof("data") == "file":
                    size = response.file.size_bytes
                else:
                    data += response.chunk
                    size = len(data)
                if size > limit:
                    raise InvalidArgument(
                        f"image file {file_id} is {size} bytes; at most {limit} are sent to a model",
                        [FieldViolation("messages.images", f"at most {limit} bytes", "TOO_LARGE")],
                        reason="IMAGE_TOO_LARGE",
                    )
        except grpc.aio.AioRpcError as error:
            raise peer_error(error, self.service) from None
        finally:
            call.cancel()
        return bytes(data)
