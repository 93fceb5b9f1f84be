"""ConversationRepository on SQLAlchemy: conversations, members, messages and reactions."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
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
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from pynode.chat.domain import ERROR, FAILED, STREAMING, Attachment, ChatMessage, Conversation, too_many_members
from pynode.core.db import Base, Database, UTCDateTime, utcnow
from pynode.core.errors import unavailable_on

_unavailable_on_outage = unavailable_on(OperationalError, what="the database")


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


def _attachments(raw: str) -> list[Attachment]:
    return [Attachment(**item) for item in orjson.loads(raw)]


def _message(row: MessageRow, reactions: dict[str, set[str]] | None = None) -> ChatMessage:
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
        attachments=_attachments(row.attachments),
        reply_to_id=row.reply_to_id,
        client_request_id=row.client_request_id,
        last_seq=row.last_seq,
        checkpoint_event_id=row.checkpoint_event_id,
        reactions=reactions or {},
    )


def _values(message: ChatMessage, owner: str, lease_until: datetime | None) -> dict[str, Any]:
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
    )


class SqlConversations:
    """The chat tables. `lease_owner`/`lease_seconds` stamp the replies this process starts."""

    def __init__(self, db: Database, lease_owner: str, lease_seconds: float) -> None:
        self._db = db
        self._owner = lease_owner
        self._lease = timedelta(seconds=lease_seconds)

    @_unavailable_on_outage
    async def add_conversation(self, conversation: Conversation) -> None:
        async with self._db.session() as session, session.begin():
            session.add(
                ConversationRow(
                    id=conversation.id,
                    owner_id=conversation.owner_id,
                    title=conversation.title,
                    model=conversation.model,
                    created_at=conversation.created_at,
                    updated_at=conversation.updated_at,
                )
            )
            await session.flush()  # the members' foreign key needs the conversation first
            session.add(
                MemberRow(
                    conversation_id=conversation.id,
                    user_id=conversation.owner_id,
                    joined_at=utcnow(),
                    display_name=conversation.member_names.get(conversation.owner_id, ""),
                )
            )

    async def _members(self, session: Any, ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, str]]:
        """Each conversation's members (user id -> display name), in the order they joined."""
        found: dict[uuid.UUID, dict[str, str]] = {i: {} for i in ids}
        if ids:
            rows = await session.execute(
                select(MemberRow.conversation_id, MemberRow.user_id, MemberRow.display_name)
                .where(MemberRow.conversation_id.in_(ids))
                .order_by(MemberRow.joined_at, MemberRow.user_id)
            )
            for conversation_id, user_id, display_name in rows:
                found[conversation_id][user_id] = display_name
        return found

    @staticmethod
    def _conversation(row: ConversationRow, members: dict[str, str]) -> Conversation:
        return Conversation(row.id, row.owner_id, row.title, row.model, row.created_at, row.updated_at, dict(members))

    @_unavailable_on_outage
    async def conversation(self, conversation_id: uuid.UUID) -> Conversation | None:
        # One round trip (Core, no ORM session): every SendMessage and event subscription starts here.
        conversations, members = ConversationRow.__table__, MemberRow.__table__
        query = (
            select(conversations, members.c.user_id, members.c.display_name)
            .select_from(conversations.outerjoin(members, members.c.conversation_id == conversations.c.id))
            .where(conversations.c.id == conversation_id)
            .order_by(members.c.joined_at, members.c.user_id)
        )
        async with self._db.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        if not rows:
            return None
        first = rows[0]
        return Conversation(
            first.id,
            first.owner_id,
            first.title,
            first.model,
            first.created_at,
            first.updated_at,
            {r.user_id: r.display_name for r in rows if r.user_id is not None},
        )

    @_unavailable_on_outage
    async def conversations_of(
        self, user_id: str, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Conversation]:
        query = (
            select(ConversationRow)
            .join(MemberRow, MemberRow.conversation_id == ConversationRow.id)
            .where(MemberRow.user_id == user_id)
        )
        if before is not None:
            query = query.where(tuple_(ConversationRow.updated_at, ConversationRow.id) < before)
        query = query.order_by(ConversationRow.updated_at.desc(), ConversationRow.id.desc()).limit(limit)
        async with self._db.session() as session:
            rows = list((await session.execute(query)).scalars())
            members = await self._members(session, [r.id for r in rows])
            return [self._conversation(r, members[r.id]) for r in rows]

    @_unavailable_on_outage
    async def update_conversation(self, conversation_id: uuid.UUID, title: str | None, model: str | None) -> None:
        values: dict[str, Any] = {}
        if title is not None:
            values["title"] = title
        if model is not None:
            values["model"] = model
        if values:
            async with self._db.session() as session, session.begin():
                await session.execute(
                    update(ConversationRow).where(ConversationRow.id == conversation_id).values(**values)
                )

    @_unavailable_on_outage
    async def delete_conversation(self, conversation_id: uuid.UUID) -> list[uuid.UUID]:
        async with self._db.session() as session, session.begin():
            streaming = list(
                (
                    await session.execute(
                        select(MessageRow.id).where(
                            MessageRow.conversation_id == conversation_id, MessageRow.state == STREAMING
                        )
                    )
                ).scalars()
            )
            # Explicit deletes, children first: SQLite enforces the cascade only with foreign keys on.
            ids = select(MessageRow.id).where(MessageRow.conversation_id == conversation_id)
            await session.execute(delete(ReactionRow).where(ReactionRow.message_id.in_(ids)))
            await session.execute(delete(MessageRow).where(MessageRow.conversation_id == conversation_id))
            await session.execute(delete(MemberRow).where(MemberRow.conversation_id == conversation_id))
            await session.execute(delete(ConversationRow).where(ConversationRow.id == conversation_id))
            return streaming

    @_unavailable_on_outage
    async def add_member(self, conversation_id: uuid.UUID, user_id: str, display_name: str, limit: int) -> bool:
        async with self._db.session() as session, session.begin():
            return await join(session, conversation_id, user_id, display_name, limit)

    @_unavailable_on_outage
    async def remove_member(self, conversation_id: uuid.UUID, user_id: str) -> bool:
        async with self._db.session() as session, session.begin():
            result = await session.execute(
                delete(MemberRow).where(MemberRow.conversation_id == conversation_id, MemberRow.user_id == user_id)
            )
            return bool(getattr(result, "rowcount", 0))

    @_unavailable_on_outage
    async def add_exchange(self, message: ChatMessage, reply: ChatMessage | None) -> bool:
        rows = [_values(message, "", None)]
        if reply is not None:
            rows.append(_values(reply, self._owner, utcnow() + self._lease))
        touch = (
            update(ConversationRow)
            .where(ConversationRow.id == message.conversation_id)
            .values(updated_at=message.created_at)
        )

        def store(connection: Connection) -> None:
            connection.execute(insert(MessageRow), rows)
            connection.execute(touch)

        try:
            await self._db.transaction(store)  # on the path of every answer's first token
        except IntegrityError:
            return False  # the same client_request_id raced in: the caller reads the winner
        return True

    @_unavailable_on_outage
    async def by_request_id(
        self, conversation_id: uuid.UUID, author_id: str, client_request_id: str
    ) -> tuple[ChatMessage, ChatMessage | None] | None:
        async with self._db.session() as session:
            row = (
                await session.execute(
                    select(MessageRow).where(
                        MessageRow.conversation_id == conversation_id,
                        MessageRow.author_id == author_id,
                        MessageRow.client_request_id == client_request_id,
                    )
                )
            ).scalar()
            if row is None:
                return None
            reply = (await session.execute(select(MessageRow).where(MessageRow.reply_to_id == row.id))).scalar()
            return _message(row), (_message(reply) if reply is not None else None)

    async def _reactions_of(self, session: Any, ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, set[str]]]:
        found: dict[uuid.UUID, dict[str, set[str]]] = {}
        if ids:
            rows = await session.execute(
                select(ReactionRow.message_id, ReactionRow.emoji, ReactionRow.user_id).where(
                    ReactionRow.message_id.in_(ids)
                )
            )
            for message_id, emoji, user_id in rows:
                found.setdefault(message_id, {}).setdefault(emoji, set()).add(user_id)
        return found

    @_unavailable_on_outage
    async def message(self, message_id: uuid.UUID) -> ChatMessage | None:
        async with self._db.session() as session:
            row = await session.get(MessageRow, message_id)
            if row is None:
                return None
            return _message(row, (await self._reactions_of(session, [row.id])).get(row.id))

    @_unavailable_on_outage
    async def messages(
        self, conversation_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[ChatMessage]:
        query = select(MessageRow).where(MessageRow.conversation_id == conversation_id)
        if before is not None:
            query = query.where(tuple_(MessageRow.created_at, MessageRow.id) < before)
        query = query.order_by(MessageRow.created_at.desc(), MessageRow.id.desc()).limit(limit)
        async with self._db.session() as session:
            rows = list((await session.execute(query)).scalars())
            reactions = await self._reactions_of(session, [r.id for r in rows])
            return [_message(r, reactions.get(r.id)) for r in rows]

    @_unavailable_on_outage
    async def history(
        self, conversation_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[ChatMessage]:
        table = MessageRow.__table__
        query = select(table).where(table.c.conversation_id == conversation_id)
        if before is not None:
            query = query.where(tuple_(table.c.created_at, table.c.id) < before)
        query = query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit)
        rows = await self._db.transaction(lambda connection: connection.execute(query).all())
        return [_message(row) for row in rows]  # type: ignore[arg-type]

    @_unavailable_on_outage
    async def history_within(
        self, conversation_id: uuid.UUID, before: tuple[datetime, uuid.UUID], chars: int, limit: int
    ) -> list[ChatMessage]:
        table = MessageRow.__table__
        newest_first = (table.c.created_at.desc(), table.c.id.desc())
        size = func.length(table.c.text)
        # Ids and running sizes only (newest first, at most `limit`); the whole rows are read for those the
        # budget reaches: a row is needed while the texts newer than it leave room.
        reach = (
            select(table.c.id, (func.sum(size).over(order_by=newest_first) - size).label("before_it"))
            .where(
                table.c.conversation_id == conversation_id,
                tuple_(table.c.created_at, table.c.id) < before,
                table.c.state != STREAMING,
                table.c.text != "",
            )
            .order_by(*newest_first)
            .limit(limit)
            .subquery()
        )
        query = (
            select(table).join(reach, reach.c.id == table.c.id).where(reach.c.before_it < chars).order_by(*newest_first)
        )
        rows = await self._db.transaction(lambda connection: connection.execute(query).all())
        return [_message(row) for row in rows]  # type: ignore[arg-type]

    @_unavailable_on_outage
    async def streaming(self, conversation_id: uuid.UUID) -> list[ChatMessage]:
        query = (
            select(MessageRow)
            .where(MessageRow.conversation_id == conversation_id, MessageRow.state == STREAMING)
            .order_by(MessageRow.created_at, MessageRow.id)
        )
        async with self._db.session() as session:
            return [_message(r) for r in (await session.execute(query)).scalars()]

    @_unavailable_on_outage
    async def checkpoint(
        self, owner: str, message_id: uuid.UUID, text: str, last_seq: int, event_id: str, lease_until: datetime
    ) -> tuple[bool, bool]:
        async with self._db.session() as session, session.begin():
            result = await session.execute(
                update(MessageRow)
                .where(MessageRow.id == message_id, MessageRow.state == STREAMING, MessageRow.lease_owner == owner)
                .values(
                    text=text,
                    last_seq=last_seq,
                    checkpoint_event_id=event_id,
                    lease_expires_at=lease_until,
                    updated_at=utcnow(),
                )
                .returning(MessageRow.cancel_requested)
            )
            flag = result.scalar()
            return flag is not None, bool(flag)

    @_unavailable_on_outage
    async def finish(self, owner: str, message: ChatMessage) -> bool:
        async with self._db.session() as session, session.begin():
            result = await session.execute(
                update(MessageRow)
                .where(MessageRow.id == message.id, MessageRow.state == STREAMING, MessageRow.lease_owner == owner)
                .values(
                    text=message.text,
                    state=message.state,
                    model=message.model,
                    finish_reason=message.finish_reason,
                    error=message.error[:500],
                    prompt_tokens=message.prompt_tokens,
                    completion_tokens=message.completion_tokens,
                    last_seq=message.last_seq,
                    lease_owner="",
                    lease_expires_at=None,
                    updated_at=utcnow(),
                )
            )
            return bool(getattr(result, "rowcount", 0))

    @_unavailable_on_outage
    async def request_cancel(self, message_id: uuid.UUID) -> bool:
        async with self._db.session() as session, session.begin():
            result = await session.execute(
                update(MessageRow)
                .where(MessageRow.id == message_id, MessageRow.state == STREAMING)
                .values(cancel_requested=True)
            )
            return bool(getattr(result, "rowcount", 0))

    @_unavailable_on_outage
    async def expire_leases(self, now: datetime, error: str) -> list[ChatMessage]:
        async with self._db.session() as session, session.begin():
            rows = list(
                (
                    await session.execute(
                        update(MessageRow)
                        .where(
                            MessageRow.state == STREAMING,
                            or_(MessageRow.lease_expires_at.is_(None), MessageRow.lease_expires_at < now),
                        )
                        .values(
                            state=FAILED,
                            finish_reason=ERROR,
                            error=error,
                            lease_owner="",
                            lease_expires_at=None,
                            updated_at=now,
                        )
                        .returning(MessageRow)
                    )
                ).scalars()
            )
            return [_message(r) for r in rows]

    @_unavailable_on_outage
    async def set_reaction(self, message_id: uuid.UUID, user_id: str, emoji: str, present: bool) -> bool:
        key = and_(ReactionRow.message_id == message_id, ReactionRow.user_id == user_id, ReactionRow.emoji == emoji)
        try:
            async with self._db.session() as session, session.begin():
                if not present:
                    return bool(getattr(await session.execute(delete(ReactionRow).where(key)), "rowcount", 0))
                if (await session.execute(select(ReactionRow.emoji).where(key))).scalar() is not None:
                    return False
                session.add(ReactionRow(message_id=message_id, user_id=user_id, emoji=emoji, created_at=utcnow()))
        except IntegrityError:
            return False  # a concurrent identical reaction won
        return True

    @_unavailable_on_outage
    async def reactions(self, message_id: uuid.UUID) -> dict[str, set[str]]:
        async with self._db.session() as session:
            return (await self._reactions_of(session, [message_id])).get(message_id, {})
