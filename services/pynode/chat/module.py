"""The chat service's entry point. Contract only for now: every RPC answers UNIMPLEMENTED, after the edge's checks."""

from __future__ import annotations

from pathlib import Path

from devpynode.chat.v1 import chat_pb2, chat_pb2_grpc

from pynode.chat.adapters.grpc_attachments import GrpcAttachments
from pynode.chat.settings import ChatSettings
from pynode.core.module import Infrastructure, Registration, ServiceParts, unbuilt

_SERVICE = chat_pb2.DESCRIPTOR.services_by_name["ChatService"]


class ChatModule:
    """devpynode.chat.v1.ChatService."""

    name = "chat"
    settings_class = ChatSettings
    service_names = (_SERVICE.full_name,)
    migrations: Path | None = None

    def load_tables(self) -> None:
        """No tables yet."""

    async def build(self, settings: ChatSettings, infra: Infrastructure) -> ServiceParts:
        # The generated base servicer answers UNIMPLEMENTED until the service's issue lands.
        servicer = unbuilt(chat_pb2_grpc.ChatServiceServicer)
        infra.peers.require("files")  # attachments are read through the files service
        return ServiceParts(
            [Registration(_SERVICE, chat_pb2_grpc.add_ChatServiceServicer_to_server, servicer)],
            component=GrpcAttachments(infra.peers),
        )


MODULE = ChatModule()
