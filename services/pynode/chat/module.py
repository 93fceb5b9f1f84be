"""The chat service's entry point: its settings and the shared infrastructure in, the servicer out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from devpynode.chat.v1 import chat_pb2, chat_pb2_grpc

from pynode.chat.adapters.grpc_accounts import GrpcAccounts
from pynode.chat.adapters.grpc_attachments import GrpcAttachments
from pynode.chat.adapters.grpc_completions import GrpcCompletions
from pynode.chat.adapters.sql_chat import SqlConversations
from pynode.chat.adapters.sql_invitations import SqlInvitations
from pynode.chat.generations import GenerationRunner
from pynode.chat.metrics import ChatMetrics
from pynode.chat.service import ChatLimits, ChatService
from pynode.chat.servicer import ChatServicer
from pynode.chat.settings import ChatSettings
from pynode.core.module import Infrastructure, Registration, ServiceParts

_SERVICE = chat_pb2.DESCRIPTOR.services_by_name["ChatService"]


@dataclass
class ChatComponents:
    """The chat service's wired parts, for its tools and tests."""

    service: ChatService
    runner: GenerationRunner


class ChatModule:
    """devpynode.chat.v1.ChatService."""

    name = "chat"
    settings_class = ChatSettings
    service_names = (_SERVICE.full_name,)
    migrations: Path | None = Path(__file__).resolve().parent / "migrations"

    def load_tables(self) -> None:
        from pynode.chat.adapters import sql_chat, sql_invitations  # noqa: F401 - registers the tables

    async def build(self, settings: ChatSettings, infra: Infrastructure) -> ServiceParts:
        for peer in ("auth", "ai", "files"):
            infra.peers.require(peer)
        owner = f"chat-{uuid.uuid4().hex[:16]}"  # this process, as the holder of generation leases
        repo = SqlConversations(infra.db, owner, settings.chat_lease_seconds)
        completions = GrpcCompletions(infra.peers)
        runner = GenerationRunner(repo, infra.streams, infra.feed, completions, owner, settings.chat_lease_seconds)
        service = ChatService(
            repo,
            infra.streams,
            infra.kv,
            runner,
            GrpcAttachments(infra.peers),
            GrpcAccounts(infra.peers),
            completions,
            ChatLimits(
                settings.chat_default_model,
                settings.chat_max_members,
                settings.chat_messages_per_minute,
                settings.chat_invites_per_minute,
                settings.chat_context_chars,
                settings.chat_history_messages,
                settings.chat_attachment_text_bytes,
                settings.chat_typing_seconds,
                settings.chat_streams_per_user,
                settings.chat_conversations_per_minute,
                reactions_per_minute=settings.chat_reactions_per_minute,
            ),
            SqlInvitations(infra.db),
        )
        metrics = ChatMetrics(lambda: (len(runner.jobs), service.subscribers))
        runner.ended = lambda state: metrics.answers.labels(state).inc()
        runner.start_background()

        async def close() -> None:
            await runner.close()
            await service.close()

        return ServiceParts(
            [Registration(_SERVICE, chat_pb2_grpc.add_ChatServiceServicer_to_server, ChatServicer(service))],
            closers=[close],
            stoppers=[runner.stop],
            component=ChatComponents(service, runner),
            collectors=metrics.collectors,
        )


MODULE = ChatModule()
