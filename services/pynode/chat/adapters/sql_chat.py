"""The chat tables on SQLAlchemy and their rows as domain values, shared by the repositories over them:
sql_conversations.py (conversations, members), sql_messages.py (messages, reactions), sql_leases.py (the leases
of streaming replies) and sql_invitations.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    select,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from pynode.chat.domain import Attachment, ChatMessage, ToolCall, too_many_members
from pynode.core.db import Base, UTCDateTime, utcnow
from pynode.core.errors import unavailable_on

unavailable_on_outage = unavailable_on(OperationalError, what="the database")


class ConversationRow(Base):
    """`chat_conversations` (migration chat_0001)."""

    __tablename__ = "chat_conversations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(36))
    title: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MemberRow(Base):
    """`chat_members`: who may read and write a conversation (the owner included)."""

    __tablename__ = "chat_members"
    __table_args__ = (Index("ix_chat_members_user_id", "user_id"),)

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), ForeignKey("chat_conversations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Kept from the account when the member joined (accounts have no rename): what the other members see.
    display_name: Mapped[str] = mapped_column(String(100), server_default="")


class MessageRow(Base):
    """`chat_messages`: members' messages and AI replies; a streaming reply carries its lease."""

    __tablename__ = "chat_messages"
    __table_args__ = (
        Index("ix_chat_messages_conversation_id_created_at_id", "conversation_id", "created_at", "id"),
        Index("ix_chat_messages_state_lease_expires_at", "state", "lease_expires_at"),
        UniqueConstraint("conversation_id", "author_id", "client_request_id", name="uq_chat_messages_request"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("chat_conversations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    author_id: Mapped[str] = mapped_column(String(36))
    text: Mapped[str] = mapped_column(Text())
    state: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(200))
    finish_reason: Mapped[str] = mapped_column(String(16))
    error: Mapped[str] = mapped_column(String(500))
    prompt_tokens: Mapped[int] = mapped_column(Integer())
    completion_tokens: Mapped[int] = mapped_column(Integer())
    attachments: Mapped[str] = mapped_column(Text())  # JSON list
    reply_to_id: Mapped[uuid.UUID | None] = mapped_column(Uuid(), nullable=True)
    client_request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    last_seq: Mapped[int] = mapped_column(BigInteger())
    checkpoint_event_id: Mapped[str] = mapped_column(String(64))
    lease_owner: Mapped[str] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    tool_calls: Mapped[str] = mapped_column(Text(), server_default="[]")  # JSON list (migration chat_0004)
    tool_call_id: Mapped[str] = mapped_column(String(128), server_default="")


class ReactionRow(Base):
    """`chat_reactions`: one reaction of a kind per member per message."""

    __tablename__ = "chat_reactions"

    message_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), ForeignKey("chat_messages.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    emoji: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


async def join(session: Any, conversation_id: uuid.UUID, user_id: str, display_name: str, limit: int) -> bool:
    """Add a member in the caller's transaction: False when the conversation is gone or they are one already;
    QuotaExceeded past `limit` members. (AddMember directly, or an invitation accepted.)"""
    # Lock the conversation so two joins cannot both pass the member limit.
    found = await session.execute(
        select(ConversationRow.id).where(ConversationRow.id == conversation_id).with_for_update()
    )
    if found.scalar() is None:
        return False
    if await session.get(MemberRow, (conversation_id, user_id)) is not None:
        return False
    count = await session.scalar(
        select(func.count()).select_from(MemberRow).where(MemberRow.conversation_id == conversation_id)
    )
    if (count or 0) >= limit:
        raise too_many_members(limit)
    session.add(
        MemberRow(conversation_id=conversation_id, user_id=user_id, joined_at=utcnow(), display_name=display_name)
    )
    return True


def attachments_of(raw: str) -> list[Attachment]:
    return [Attachment(**item) for item in orjson.loads(raw)]


def tool_calls_of(raw: str) -> list[ToolCall]:
    return [ToolCall(**item) for item in orjson.loads(raw or "[]")]


def tool_calls_json(calls: list[ToolCall]) -> str:
    return orjson.dumps([c.__dict__ for c in calls]).decode()


def message_of_row(row: MessageRow, reactions: dict[str, set[str]] | None = None) -> ChatMessage:
    return ChatMessage(
        id=row.id,
        conversation_id=row.conversation_id,
        role=row.role,
        author_id=row.author_id,
        text=row.text,
        state=row.state,
        created_at=row.created_at,
        model=row.model,
        finish_reason=row.finish_reason,
        error=row.error,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        attachments=attachments_of(row.attachments),
        reply_to_id=row.reply_to_id,
        client_request_id=row.client_request_id,
        last_seq=row.last_seq,
        checkpoint_event_id=row.checkpoint_event_id,
        reactions=reactions or {},
        tool_calls=tool_calls_of(row.tool_calls),
        tool_call_id=row.tool_call_id,
    )


def row_values(message: ChatMessage, owner: str, lease_until: datetime | None) -> dict[str, Any]:
    return dict(
        id=message.id,
        conversation_id=message.conversation_id,
        role=message.role,
        author_id=message.author_id,
        text=message.text,
        state=message.state,
        model=message.model,
        finish_reason=message.finish_reason,
        error=message.error,
        prompt_tokens=message.prompt_tokens,
        completion_tokens=message.completion_tokens,
        attachments=orjson.dumps([a.__dict__ for a in message.attachments]).decode(),
        reply_to_id=message.reply_to_id,
        client_request_id=message.client_request_id,
        last_seq=message.last_seq,
        checkpoint_event_id=message.checkpoint_event_id,
        lease_owner=owner,
        lease_expires_at=lease_until,
        cancel_requested=False,
        created_at=message.created_at,
        updated_at=message.created_at,
        tool_calls=tool_calls_json(message.tool_calls),
        tool_call_id=message.tool_call_id,
    )
