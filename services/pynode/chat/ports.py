"""What chat needs: its own storage, and its peers (accounts, AI router, files) as Protocols."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pynode.chat.domain import Attachment, ChatMessage, Conversation, Invitation, ToolCall, ToolSpec


@dataclass(frozen=True)
class PromptMessage:
    """One message of the history given to the model."""

    role: str  # user, assistant or tool (system for instructions)
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an AI reply's calls
    tool_call_id: str = ""  # a tool result's call
    images: tuple[bytes, ...] = ()  # pictures of a member's message (for vision models)


@dataclass(frozen=True)
class CompletionPiece:
    """A piece of the model's answer; the last carries why it ended and the usage."""

    text: str
    model: str = ""
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: tuple[ToolCall, ...] = ()  # on the last piece: the calls the model made, whole


class Completions(Protocol):
    """The AI router, called with this service's identity for a named user."""

    async def known_model(self, model: str) -> bool:
        """Whether the router lists `model` (a model id or an alias), asked as the calling user."""

    def generate(
        self,
        user_id: str,
        model: str,
        messages: list[PromptMessage],
        client_address: str = "",
        tools: tuple[ToolSpec, ...] = (),
    ) -> AsyncGenerator[CompletionPiece, None]:
        """Stream the answer; raises a DomainError when the router refuses or fails. `client_address` is the
        end user's (the router's per-address limits and fair queue apply to it); `tools` the model may call."""


class AttachmentReader(Protocol):
    """The files service."""

    async def attachment(self, file_id: str) -> Attachment:
        """The file as the calling user sees it (NotFound unless they may read it)."""

    def read(self, file_id: str, user_id: str) -> AsyncGenerator[Attachment | bytes, None]:
        """A file read for `user_id` with this service's identity: its metadata, then its bytes."""


@dataclass(frozen=True)
class Account:
    """An account as chat shows it to members."""

    user_id: str
    display_name: str


class AccountDirectory(Protocol):
    """The auth service."""

    async def enabled_user(self, *, email: str = "", user_id: str = "") -> Account | None:
        """The enabled account with this e-mail (or id), or None."""


class ConversationRepository(Protocol):
    """Conversations and their members (the use cases on conversations, the membership cache)."""

    async def add_conversation(self, conversation: Conversation) -> None: ...

    async def conversation(self, conversation_id: uuid.UUID) -> Conversation | None:
        """With its member ids."""

    async def conversations_of(
        self, user_id: str, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Conversation]:
        """Most recent activity first."""

    async def update_conversation(self, conversation_id: uuid.UUID, title: str | None, model: str | None) -> None: ...

    async def delete_conversation(self, conversation_id: uuid.UUID) -> list[uuid.UUID]:
        """Delete it with everything in it; returns the ids of AI replies that were still streaming."""

    async def add_member(self, conversation_id: uuid.UUID, user_id: str, display_name: str, limit: int) -> bool:
        """False when already a member; raises QuotaExceeded past `limit` members."""

    async def remove_member(self, conversation_id: uuid.UUID, user_id: str) -> bool: ...


class MessageRepository(Protocol):
    """Messages and their reactions (the use cases on messages, the prompt, the newest-messages cache)."""

    async def add_exchange(self, message: ChatMessage, reply: ChatMessage | None) -> bool:
        """Store a member's message (and the AI reply it starts) and mark the conversation active.
        False when the author already sent a message with that client_request_id."""

    async def by_request_id(
        self, conversation_id: uuid.UUID, author_id: str, client_request_id: str
    ) -> tuple[ChatMessage, ChatMessage | None] | None:
        """A message sent before with this client_request_id, and its AI reply."""

    async def message(self, message_id: uuid.UUID) -> ChatMessage | None: ...

    async def messages(
        self, conversation_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[ChatMessage]:
        """Newest first."""

    async def history(
        self, conversation_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[ChatMessage]:
        """Newest first, without reactions: what a prompt is made of."""

    async def history_within(
        self, conversation_id: uuid.UUID, before: tuple[datetime, uuid.UUID], chars: int, limit: int
    ) -> list[ChatMessage]:
        """Newest first, like `history`, of the finished messages with text only, and only as far back as
        their texts reach `chars` (the one that crosses it included): what a prompt with that budget can hold,
        in one read."""

    async def streaming(self, conversation_id: uuid.UUID) -> list[ChatMessage]:
        """AI replies still being written."""

    async def set_reaction(self, message_id: uuid.UUID, user_id: str, emoji: str, present: bool) -> bool:
        """Add or remove one reaction; False when nothing changed."""

    async def reactions(self, message_id: uuid.UUID) -> dict[str, set[str]]: ...


class GenerationLeases(Protocol):
    """The leases of streaming AI replies: who writes each, until when, and whether a member cancelled it
    (the generation runner, and cancellation from any process)."""

    async def checkpoint(
        self, owner: str, message_id: uuid.UUID, text: str, last_seq: int, event_id: str, lease_until: datetime
    ) -> tuple[bool, bool]:
        """Save a running reply's text so far and renew its lease: (still ours, cancel requested)."""

    async def finish(self, owner: str, message: ChatMessage) -> bool:
        """Save a reply's end, if `owner` still holds its lease (a sweeper may have taken it)."""

    async def request_cancel(self, message_id: uuid.UUID) -> bool:
        """Flag a streaming reply for cancellation (its owner sees the flag); False when it is not streaming."""

    async def expire_leases(self, now: datetime, error: str) -> list[ChatMessage]:
        """Mark replies whose lease ran out as failed, keeping their text; returns them."""


class InvitationRepository(Protocol):
    """Pending invitations: who may join which conversation, once they accept."""

    async def invite(self, conversation_id: uuid.UUID, user_id: str, display_name: str, inviter_id: str) -> None:
        """Record an invitation (its invitee's display name is the one they join with); nothing when they are
        already a member or already invited."""

    async def invitations_of(
        self, user_id: str, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Invitation]:
        """The user's pending invitations, newest first."""

    async def accept(self, conversation_id: uuid.UUID, user_id: str, limit: int) -> bool:
        """Turn the invitation into a membership; False when there is none. QuotaExceeded past `limit` members."""

    async def decline(self, conversation_id: uuid.UUID, user_id: str) -> bool:
        """Drop the invitation; False when there is none."""
