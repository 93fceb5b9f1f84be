"""gRPC edge of the chat service: protos in, domain calls, protos out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

import grpc
from devpynode.chat.v1 import chat_pb2, chat_pb2_grpc

from pynode.chat.domain import (
    ASSISTANT,
    CANCELLED,
    COMPLETE,
    ERROR,
    FAILED,
    LENGTH,
    STOP,
    STREAMING,
    TIME_LIMIT,
    TOOL,
    TOOL_CALLS,
    Attachment,
    ChatEvent,
    ChatMessage,
    Conversation,
    ConversationDeleted,
    ConversationUpdated,
    DeltaEvent,
    Invitation,
    MemberAdded,
    MemberRemoved,
    MessageEvent,
    ReactionEvent,
    Ready,
    Reload,
    ToolSpec,
    TypingEvent,
)
from pynode.chat.service import ChatService, ToolResult
from pynode.core.principal import current_client, current_principal
from pynode.core.timestamps import timestamp as _ts

_STATES = {
    STREAMING: chat_pb2.MESSAGE_STATE_STREAMING,
    COMPLETE: chat_pb2.MESSAGE_STATE_COMPLETE,
    CANCELLED: chat_pb2.MESSAGE_STATE_CANCELLED,
    FAILED: chat_pb2.MESSAGE_STATE_FAILED,
}
_FINISH = {
    STOP: chat_pb2.FINISH_REASON_STOP,
    LENGTH: chat_pb2.FINISH_REASON_LENGTH,
    # Cut at the AI router's longest generation time: like LENGTH, the text is complete only as far as it got.
    TIME_LIMIT: chat_pb2.FINISH_REASON_LENGTH,
    CANCELLED: chat_pb2.FINISH_REASON_CANCELLED,
    ERROR: chat_pb2.FINISH_REASON_ERROR,
    TOOL_CALLS: chat_pb2.FINISH_REASON_TOOL_CALLS,
}
_ROLES = {ASSISTANT: chat_pb2.MESSAGE_ROLE_ASSISTANT, TOOL: chat_pb2.MESSAGE_ROLE_TOOL}


def conversation_proto(conversation: Conversation) -> chat_pb2.Conversation:
    return chat_pb2.Conversation(
        id=str(conversation.id),
        title=conversation.title,
        model=conversation.model,
        owner_id=conversation.owner_id,
        member_ids=conversation.member_ids,
        member_names=conversation.member_names,
        created_at=_ts(conversation.created_at),
        updated_at=_ts(conversation.updated_at),
    )


def invitation_proto(invitation: Invitation) -> chat_pb2.Invitation:
    return chat_pb2.Invitation(
        conversation_id=str(invitation.conversation_id),
        title=invitation.title,
        inviter_id=invitation.inviter_id,
        inviter_name=invitation.inviter_name,
        created_at=_ts(invitation.created_at),
    )


def attachment_proto(attachment: Attachment) -> chat_pb2.Attachment:
    return chat_pb2.Attachment(
        file_id=attachment.file_id,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size_bytes=attachment.size_bytes,
    )


def reactions_proto(reactions: dict[str, set[str]], viewer: str) -> list[chat_pb2.ReactionSummary]:
    return [
        chat_pb2.ReactionSummary(emoji=emoji, count=len(users), reacted_by_me=viewer in users)
        for emoji, users in sorted(reactions.items())
        if users
    ]


def message_proto(message: ChatMessage, viewer: str) -> chat_pb2.Message:
    assistant = message.role == ASSISTANT
    return chat_pb2.Message(
        id=str(message.id),
        conversation_id=str(message.conversation_id),
        role=_ROLES.get(message.role, chat_pb2.MESSAGE_ROLE_USER),
        text=message.text,
        author_id="" if assistant else message.author_id,
        attachment_file_ids=[a.file_id for a in message.attachments],
        attachments=[attachment_proto(a) for a in message.attachments],
        state=_STATES.get(message.state, chat_pb2.MESSAGE_STATE_UNSPECIFIED),
        usage=chat_pb2.Usage(prompt_tokens=message.prompt_tokens, completion_tokens=message.completion_tokens),
        reactions=reactions_proto(message.reactions, viewer),
        created_at=_ts(message.created_at),
        model=message.model,
        finish_reason=_FINISH.get(message.finish_reason, chat_pb2.FINISH_REASON_UNSPECIFIED),
        error=message.error,
        reply_to_id=str(message.reply_to_id) if message.reply_to_id else "",
        last_seq=message.last_seq,
        tool_calls=[chat_pb2.ToolCall(id=c.id, name=c.name, arguments_json=c.arguments) for c in message.tool_calls],
        tool_call_id=message.tool_call_id,
    )


def _delta(delta: DeltaEvent) -> chat_pb2.Delta:
    return chat_pb2.Delta(seq=delta.seq, text=delta.text, message_id=delta.message_id)


def event_proto(event: ChatEvent, viewer: str) -> chat_pb2.StreamEventsResponse:
    """One stream event as a subscriber sees it (reacted_by_me is the subscriber's own)."""
    out = chat_pb2.StreamEventsResponse(id=event.id)
    match event:
        case MessageEvent(message=message):
            out.message.CopyFrom(message_proto(message, viewer))
        case DeltaEvent():
            out.delta.CopyFrom(_delta(event))
        case TypingEvent(user_id=user_id, typing=typing, expires_at=expires_at):
            shown = chat_pb2.TypingEvent(user_id=user_id, typing=typing)
            if expires_at:
                shown.expires_at.CopyFrom(_ts(datetime.fromisoformat(expires_at)))
            out.typing.CopyFrom(shown)
        case ReactionEvent():
            out.reaction.CopyFrom(
                chat_pb2.ReactionEvent(
                    message_id=event.message_id,
                    reactions=reactions_proto(event.reactions, viewer),
                    user_id=event.user_id,
                    emoji=event.emoji,
                    added=event.added,
                )
            )
        case MemberAdded(user_id=user_id):
            out.member_added.user_id = user_id
        case MemberRemoved(user_id=user_id):
            out.member_removed.user_id = user_id
        case Ready():
            out.ready.SetInParent()
        case Reload():
            out.reload.SetInParent()
        case ConversationUpdated(conversation=conversation):
            out.conversation_updated.CopyFrom(conversation_proto(conversation))
        case ConversationDeleted():
            out.conversation_deleted.SetInParent()
    return out


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    """devpynode.chat.v1.ChatService."""

    def __init__(self, service: ChatService) -> None:
        self._service = service

    async def CreateConversation(
        self,
        request: chat_pb2.CreateConversationRequest,
        context: grpc.aio.ServicerContext[chat_pb2.CreateConversationRequest, chat_pb2.CreateConversationResponse],
    ) -> chat_pb2.CreateConversationResponse:
        conversation = await self._service.create(current_principal(), request.title, request.model)
        return chat_pb2.CreateConversationResponse(conversation=conversation_proto(conversation))

    async def GetConversation(
        self,
        request: chat_pb2.GetConversationRequest,
        context: grpc.aio.ServicerContext[chat_pb2.GetConversationRequest, chat_pb2.GetConversationResponse],
    ) -> chat_pb2.GetConversationResponse:
        conversation = await self._service.get(current_principal(), request.conversation_id)
        return chat_pb2.GetConversationResponse(conversation=conversation_proto(conversation))

    async def ListConversations(
        self,
        request: chat_pb2.ListConversationsRequest,
        context: grpc.aio.ServicerContext[chat_pb2.ListConversationsRequest, chat_pb2.ListConversationsResponse],
    ) -> chat_pb2.ListConversationsResponse:
        page, token = await self._service.conversations(current_principal(), request.page_size, request.page_token)
        return chat_pb2.ListConversationsResponse(
            conversations=[conversation_proto(c) for c in page], next_page_token=token
        )

    async def DeleteConversation(
        self,
        request: chat_pb2.DeleteConversationRequest,
        context: grpc.aio.ServicerContext[chat_pb2.DeleteConversationRequest, chat_pb2.DeleteConversationResponse],
    ) -> chat_pb2.DeleteConversationResponse:
        await self._service.delete(current_principal(), request.conversation_id)
        return chat_pb2.DeleteConversationResponse()

    async def UpdateConversation(
        self,
        request: chat_pb2.UpdateConversationRequest,
        context: grpc.aio.ServicerContext[chat_pb2.UpdateConversationRequest, chat_pb2.UpdateConversationResponse],
    ) -> chat_pb2.UpdateConversationResponse:
        conversation = await self._service.update(
            current_principal(),
            request.conversation_id,
            request.title if request.HasField("title") else None,
            request.model if request.HasField("model") else None,
        )
        return chat_pb2.UpdateConversationResponse(conversation=conversation_proto(conversation))

    async def AddMember(
        self,
        request: chat_pb2.AddMemberRequest,
        context: grpc.aio.ServicerContext[chat_pb2.AddMemberRequest, chat_pb2.AddMemberResponse],
    ) -> chat_pb2.AddMemberResponse:
        conversation = await self._service.add_member(
            current_principal(), request.conversation_id, request.user_id, request.email
        )
        return chat_pb2.AddMemberResponse(conversation=conversation_proto(conversation))

    async def ListInvitations(
        self,
        request: chat_pb2.ListInvitationsRequest,
        context: grpc.aio.ServicerContext[chat_pb2.ListInvitationsRequest, chat_pb2.ListInvitationsResponse],
    ) -> chat_pb2.ListInvitationsResponse:
        page, token = await self._service.pending_invitations(
            current_principal(), request.page_size, request.page_token
        )
        return chat_pb2.ListInvitationsResponse(invitations=[invitation_proto(i) for i in page], next_page_token=token)

    async def AcceptInvitation(
        self,
        request: chat_pb2.AcceptInvitationRequest,
        context: grpc.aio.ServicerContext[chat_pb2.AcceptInvitationRequest, chat_pb2.AcceptInvitationResponse],
    ) -> chat_pb2.AcceptInvitationResponse:
        conversation = await self._service.accept_invitation(current_principal(), request.conversation_id)
        return chat_pb2.AcceptInvitationResponse(conversation=conversation_proto(conversation))

    async def DeclineInvitation(
        self,
        request: chat_pb2.DeclineInvitationRequest,
        context: grpc.aio.ServicerContext[chat_pb2.DeclineInvitationRequest, chat_pb2.DeclineInvitationResponse],
    ) -> chat_pb2.DeclineInvitationResponse:
        await self._service.decline_invitation(current_principal(), request.conversation_id)
        return chat_pb2.DeclineInvitationResponse()

    async def RemoveMember(
        self,
        request: chat_pb2.RemoveMemberRequest,
        context: grpc.aio.ServicerContext[chat_pb2.RemoveMemberRequest, chat_pb2.RemoveMemberResponse],
    ) -> chat_pb2.RemoveMemberResponse:
        await self._service.remove_member(current_principal(), request.conversation_id, request.user_id)
        return chat_pb2.RemoveMemberResponse()

    async def SendMessage(
        self,
        request: chat_pb2.SendMessageRequest,
        context: grpc.aio.ServicerContext[chat_pb2.SendMessageRequest, chat_pb2.SendMessageResponse],
    ) -> AsyncIterator[chat_pb2.SendMessageResponse]:
        caller = current_principal()
        sent = await self._service.send(
            caller,
            request.conversation_id,
            request.text,
            list(request.attachment_file_ids),
            request.client_request_id,
            current_client().address,
            tools=tuple(ToolSpec(t.name, t.description, t.parameters_json) for t in request.tools),
            results=tuple(ToolResult(r.tool_call_id, r.content) for r in request.tool_results),
        )
        yield chat_pb2.SendMessageResponse(user_message=message_proto(sent.message, caller.subject))
        if sent.reply_events is None:
            return
        async with contextlib.aclosing(sent.reply_events) as events:
            async for event in events:
                if isinstance(event, DeltaEvent):
                    yield chat_pb2.SendMessageResponse(delta=_delta(event))
                else:
                    yield chat_pb2.SendMessageResponse(assistant_message=message_proto(event.message, caller.subject))

    async def ListMessages(
        self,
        request: chat_pb2.ListMessagesRequest,
        context: grpc.aio.ServicerContext[chat_pb2.ListMessagesRequest, chat_pb2.ListMessagesResponse],
    ) -> chat_pb2.ListMessagesResponse:
        caller = current_principal()
        page, token = await self._service.messages(
            caller, request.conversation_id, request.page_size, request.page_token
        )
        return chat_pb2.ListMessagesResponse(
            messages=[message_proto(m, caller.subject) for m in page], next_page_token=token
        )

    async def CancelGeneration(
        self,
        request: chat_pb2.CancelGenerationRequest,
        context: grpc.aio.ServicerContext[chat_pb2.CancelGenerationRequest, chat_pb2.CancelGenerationResponse],
    ) -> chat_pb2.CancelGenerationResponse:
        caller = current_principal()
        message = await self._service.cancel(caller, request.conversation_id, request.message_id)
        return chat_pb2.CancelGenerationResponse(message=message_proto(message, caller.subject))

    async def AddReaction(
        self,
        request: chat_pb2.AddReactionRequest,
        context: grpc.aio.ServicerContext[chat_pb2.AddReactionRequest, chat_pb2.AddReactionResponse],
    ) -> chat_pb2.AddReactionResponse:
        caller = current_principal()
        reactions = await self._service.react(
            caller, request.conversation_id, request.message_id, request.emoji, present=True
        )
        return chat_pb2.AddReactionResponse(reactions=reactions_proto(reactions, caller.subject))

    async def RemoveReaction(
        self,
        request: chat_pb2.RemoveReactionRequest,
        context: grpc.aio.ServicerContext[chat_pb2.RemoveReactionRequest, chat_pb2.RemoveReactionResponse],
    ) -> chat_pb2.RemoveReactionResponse:
        caller = current_principal()
        reactions = await self._service.react(
            caller, request.conversation_id, request.message_id, request.emoji, present=False
        )
        return chat_pb2.RemoveReactionResponse(reactions=reactions_proto(reactions, caller.subject))

    async def SendTyping(
        self,
        request: chat_pb2.SendTypingRequest,
        context: grpc.aio.ServicerContext[chat_pb2.SendTypingRequest, chat_pb2.SendTypingResponse],
    ) -> chat_pb2.SendTypingResponse:
        await self._service.typing(current_principal(), request.conversation_id, request.typing)
        return chat_pb2.SendTypingResponse()

    async def StreamEvents(
        self,
        request: chat_pb2.StreamEventsRequest,
        context: grpc.aio.ServicerContext[chat_pb2.StreamEventsRequest, chat_pb2.StreamEventsResponse],
    ) -> AsyncIterator[chat_pb2.StreamEventsResponse]:
        caller = current_principal()
        following = self._service.events(caller, request.conversation_id, request.after, current_client().address)
        async with contextlib.aclosing(following) as events:
            async for event in events:
                yield event_proto(event, caller.subject)

    async def DownloadAttachment(
        self,
        request: chat_pb2.DownloadAttachmentRequest,
        context: grpc.aio.ServicerContext[chat_pb2.DownloadAttachmentRequest, chat_pb2.DownloadAttachmentResponse],
    ) -> AsyncIterator[chat_pb2.DownloadAttachmentResponse]:
        parts = await self._service.attachment(
            current_principal(), request.conversation_id, request.message_id, request.file_id
        )
        async with contextlib.aclosing(parts):
            async for part in parts:
                if isinstance(part, Attachment):
                    yield chat_pb2.DownloadAttachmentResponse(attachment=attachment_proto(part))
                else:
                    yield chat_pb2.DownloadAttachmentResponse(chunk=part)
