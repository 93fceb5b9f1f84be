"""The chat service's entry point: its settings and the shared infrastructure in, the servicer out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devpynode.chat.v1 import chat_pb2

from pynode.chat.settings import ChatSettings
from pynode.core.module import Infrastructure, Registration, ServiceParts

if TYPE_CHECKING:  # the adapters are imported by build(): the app and the CLI import this file to list services
    from pynode.chat.adapters.sql_messages import SqlMessages
    from pynode.chat.generations import GenerationRunner
    from pynode.chat.service import ChatService

_SERVICE = chat_pb2.DESCRIPTOR.services_by_name["ChatService"]


@dataclass
class ChatComponents:
    """The chat service's wired parts, for its tools and tests."""

    service: ChatService
    runner: GenerationRunner
    messages: SqlMessages  # the repository the prompt reads history from


class ChatModule:
    """devpynode.chat.v1.ChatService."""

    name = "chat"
    settings_class = ChatSettings
    service_names = (_SERVICE.full_name,)
    migrations: Path | None = Path(__file__).resolve().parent / "migrations"

    def load_tables(self) -> None:
        from pynode.chat.adapters import sql_chat, sql_invitations  # noqa: F401 - registers the tables

    async def build(self, settings: ChatSettings, infra: Infrastructure) -> ServiceParts:
        from devpynode.chat.v1 import chat_pb2_grpc

        from pynode.chat.adapters.grpc_accounts import GrpcAccounts
        from pynode.chat.adapters.grpc_attachments import GrpcAttachments
        from pynode.chat.adapters.grpc_completions import GrpcCompletions
        from pynode.chat.adapters.sql_conversations import SqlConversations
        from pynode.chat.adapters.sql_invitations import SqlInvitations
        from pynode.chat.adapters.sql_leases import SqlGenerationLeases
        from pynode.chat.adapters.sql_messages import SqlMessages
        from pynode.chat.answered import AnswerEnds
        from pynode.chat.generations import GenerationRunner
        from pynode.chat.membership import CachedConversations
        from pynode.chat.metrics import ChatMetrics
        from pynode.chat.prompts import PromptAssembler, PromptLimits
        from pynode.chat.recent import RecentMessages
        from pynode.chat.service import ChatLimits, ChatService
        from pynode.chat.servicer import ChatServicer
        from pynode.chat.subscriptions import Subscriptions

        for peer in ("auth", "ai", "files"):
            infra.peers.require(peer)
        owner = f"chat-{uuid.uuid4().hex[:16]}"  # this process, as the holder of generation leases
        conversations = SqlConversations(infra.db)
        messages = SqlMessages(infra.db, owner, settings.chat_lease_seconds, settings.chat_fast_exchange_commit)
        cached = CachedConversations(conversations, infra.kv)
        recent = RecentMessages(messages, infra.kv)
        attachments, accounts, completions = (
            GrpcAttachments(infra.peers),
            GrpcAccounts(infra.peers),
            GrpcCompletions(infra.peers),
        )
        prompts = PromptAssembler(
            messages,
            attachments,
            PromptLimits(
                settings.chat_context_chars,
                settings.chat_history_messages,
                settings.chat_attachment_text_bytes,
                settings.chat_image_bytes,
            ),
        )
        # Read at each scrape: the runner and the subscriptions are built below.
        metrics = ChatMetrics(lambda: (len(runner.jobs), subscriptions.subscribers))
        runner = GenerationRunner(
            SqlGenerationLeases(infra.db),
            messages,
            infra.streams,
            infra.feed,
            completions,
            prompts,
            AnswerEnds(conversations, messages, cached, recent, infra.streams).ended,
            owner,
            settings.chat_lease_seconds,
            ended=lambda state: metrics.answers.labels(state).inc(),
        )
        subscriptions = Subscriptions(
            messages, infra.streams, runner, settings.chat_streams_per_user, settings.chat_streams_per_address
        )
        service = ChatService(
            conversations,
            messages,
            SqlInvitations(infra.db),
            cached,
            recent,
            infra.streams,
            infra.kv,
            runner,
            subscriptions,
            (attachments, accounts, completions),
            ChatLimits(
                settings.chat_default_model,
                settings.chat_max_members,
                settings.chat_messages_per_minute,
                settings.chat_invites_per_minute,
                settings.chat_typing_seconds,
                settings.chat_streams_per_user,
                settings.chat_conversations_per_minute,
                reactions_per_minute=settings.chat_reactions_per_minute,
            ),
        )
        runner.start_background()

        async def close() -> None:
            await runner.close()
            await service.close()

        return ServiceParts(
            [Registration(_SERVICE, chat_pb2_grpc.add_ChatServiceServicer_to_server, ChatServicer(service))],
            closers=[close],
            stoppers=[runner.stop],
            component=ChatComponents(service, runner, messages),
            collectors=metrics.collectors,
        )


MODULE = ChatModule()
