"""Chat domain types: conversations, their members, messages and the events members receive."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from pynode.core.errors import QuotaExceeded, QuotaViolation

USER, ASSISTANT, TOOL = "user", "assistant", "tool"
STREAMING, COMPLETE, CANCELLED, FAILED = "streaming", "complete", "cancelled", "failed"
# Why an AI reply ended (the AI router's words).
STOP, LENGTH, ERROR = "stop", "length", "error"
# The AI router ended the answer at its longest generation time: complete as far as it got, like LENGTH.
TIME_LIMIT = "time_limit"
# The model called tools: the reply is complete, and a member posts the results to go on.
TOOL_CALLS = "tool_calls"
FINISHED = (STOP, LENGTH, TIME_LIMIT, TOOL_CALLS)  # the model ended the answer itself: complete as far as it goes


@dataclass(frozen=True)
class Attachment:
    """A file attached to a message, as members see it."""

    file_id: str
    filename: str
    content_type: str
    size_bytes: int


@dataclass(frozen=True)
class ToolCall:
    """A call the model made in an AI reply: `arguments` is JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolSpec:
    """A tool a member's client offers the model for one reply: `parameters` is a JSON Schema as JSON text."""

    name: str
    description: str = ""
    parameters: str = ""


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
    tool_calls: list[ToolCall] = field(default_factory=list)  # an AI reply's calls (finish reason tool_calls)
    tool_call_id: str = ""  # a tool message's call


# --- the events members receive, one class per kind (events.py keeps them in the conversation's stream) ---
# Each carries the stream's id of the event (`id`, empty until it is read back from the stream).


@dataclass(frozen=True)
class MessageEvent:
    """A message was posted, or an AI reply started or ended (the message whole, reactions included)."""

    message: ChatMessage
    id: str = ""


@dataclass(frozen=True)
class DeltaEvent:
    """The next piece of a streaming AI reply's text (`seq` counts from 0)."""

    message_id: str
    seq: int
    text: str
    id: str = ""


@dataclass(frozen=True)
class TypingEvent:
    """A member started (until `expires_at`, ISO 8601) or stopped typing."""

    user_id: str
    typing: bool
    expires_at: str = ""
    id: str = ""


@dataclass(frozen=True)
class ReactionEvent:
    """A member added or removed a reaction; `reactions` is the message's reactions after it."""

    message_id: str
    user_id: str
    emoji: str
    added: bool
    reactions: dict[str, set[str]]
    id: str = ""


@dataclass(frozen=True)
class MemberAdded:
    """A member joined the conversation."""

    user_id: str
    id: str = ""


@dataclass(frozen=True)
class MemberRemoved:
    """A member left or was removed."""

    user_id: str
    id: str = ""


@dataclass(frozen=True)
class ConversationUpdated:
    """The conversation's title or model changed."""

    conversation: Conversation
    id: str = ""


@dataclass(frozen=True)
class ConversationDeleted:
    """The conversation is gone: every subscription ends with this event."""

    id: str = ""


@dataclass(frozen=True)
class Ready:
    """A subscription from now on is live (the streaming replies' snapshots follow)."""

    id: str = ""


@dataclass(frozen=True)
class Reload:
    """The events after the subscriber's position were trimmed away: reload, then follow from `id`."""

    id: str = ""


ChatEvent = (
    MessageEvent
    | DeltaEvent
    | TypingEvent
    | ReactionEvent
    | MemberAdded
    | MemberRemoved
    | ConversationUpdated
    | ConversationDeleted
    | Ready
    | Reload
)
# What a SendMessage stream carries after the member's message: the reply's deltas, then the reply's end.
ReplyEvent = DeltaEvent | MessageEvent


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
