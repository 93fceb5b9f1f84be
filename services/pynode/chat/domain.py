"""Chat domain types: conversations, their members, messages and the events members receive."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from pynode.core.errors import QuotaExceeded, QuotaViolation

USER, ASSISTANT = "user", "assistant"
STREAMING, COMPLETE, CANCELLED, FAILED = "streaming", "complete", "cancelled", "failed"
# Why an AI reply ended (the AI router's words).
STOP, LENGTH, ERROR = "stop", "length", "error"


@dataclass(frozen=True)
class Attachment:
    """A file attached to a message, as members see it."""

    file_id: str
    filename: str
    content_type: str
    size_bytes: int


@dataclass
class Conversation:
    """A thread of messages between members and a model."""

    id: uuid.UUID
    owner_id: str
    title: str
    model: str
    created_at: datetime
    updated_at: datetime
    member_names: dict[str, str] = field(default_factory=dict)  # display names by user id, in joining order

    @property
    def member_ids(self) -> list[str]:
        return list(self.member_names)


@dataclass
class ChatMessage:
    """A member's message or an AI reply; an AI reply is `streaming` until its generation ends."""

    id: uuid.UUID
    conversation_id: uuid.UUID
    role: str
    author_id: str  # the member who wrote it; for an AI reply, the member whose message it answers
    text: str
    state: str
    created_at: datetime
    model: str = ""
    finish_reason: str = ""
    error: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attachments: list[Attachment] = field(default_factory=list)
    reply_to_id: uuid.UUID | None = None
    client_request_id: str | None = None
    last_seq: int = -1  # seq of the last delta `text` includes
    checkpoint_event_id: str = "0-0"  # the event stream's id when `text` was saved
    reactions: dict[str, set[str]] = field(default_factory=dict)  # emoji -> user ids


@dataclass(frozen=True)
class ChatEvent:
    """One change members see, as kept in the conversation's event stream.

    `kind` is one of message, delta, typing, reaction, member_added, member_removed,
    conversation_updated, conversation_deleted; `data` is what the kind needs (JSON-safe)."""

    kind: str
    data: dict[str, object]
    id: str = ""


@dataclass(frozen=True)
class Invitation:
    """A pending invitation, as its invitee sees it: they join the conversation only by accepting it."""

    conversation_id: uuid.UUID
    title: str
    inviter_id: str
    inviter_name: str
    created_at: datetime


def too_many_members(limit: int) -> QuotaExceeded:
    """The refusal of a member (or an invitation) past a conversation's limit."""
    return QuotaExceeded(
        f"a conversation has at most {limit} members",
        retry_after=0.0,
        violations=[QuotaViolation("chat:members_per_conversation", "members of one conversation")],
        reason="TOO_MANY_MEMBERS",
    )
