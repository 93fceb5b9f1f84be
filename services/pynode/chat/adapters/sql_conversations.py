"""ConversationRepository on SQLAlchemy: conversations and their members."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, tuple_, update

from pynode.chat.adapters.sql_chat import (
    ConversationRow,
    MemberRow,
    MessageRow,
    ReactionRow,
    join,
    unavailable_on_outage,
)
from pynode.chat.domain import STREAMING, Conversation
from pynode.core.db import Database, utcnow


class SqlConversations:
    """The conversations and members tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @unavailable_on_outage
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

    @unavailable_on_outage
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

    @unavailable_on_outage
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

    @unavailable_on_outage
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

    @unavailable_on_outage
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

    @unavailable_on_outage
    async def add_member(self, conversation_id: uuid.UUID, user_id: str, display_name: str, limit: int) -> bool:
        async with self._db.session() as session, session.begin():
            return await join(session, conversation_id, user_id, display_name, limit)

    @unavailable_on_outage
    async def remove_member(self, conversation_id: uuid.UUID, user_id: str) -> bool:
        async with self._db.session() as session, session.begin():
            result = await session.execute(
                delete(MemberRow).where(MemberRow.conversation_id == conversation_id, MemberRow.user_id == user_id)
            )
            return bool(getattr(result, "rowcount", 0))
