"""InvitationRepository on SQLAlchemy: `chat_invitations` (migration chat_0003), next to the chat tables."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Uuid, delete, select, tuple_
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from pynode.chat.adapters.sql_chat import ConversationRow, MemberRow, join
from pynode.chat.domain import Invitation
from pynode.core.db import Base, Database, UTCDateTime, utcnow
from pynode.core.errors import unavailable_on

_unavailable_on_outage = unavailable_on(OperationalError, what="the database")


class InvitationRow(Base):
    """`chat_invitations`: an account invited to a conversation that has not yet accepted or declined."""

    __tablename__ = "chat_invitations"
    __table_args__ = (Index("ix_chat_invitations_user_id_created_at", "user_id", "created_at"),)

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), ForeignKey("chat_conversations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(100))  # the invitee's: the name they join with
    inviter_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SqlInvitations:
    """Pending invitations; accepting one adds the member in the same transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @_unavailable_on_outage
    async def invite(self, conversation_id: uuid.UUID, user_id: str, display_name: str, inviter_id: str) -> None:
        try:
            async with self._db.session() as session, session.begin():
                if await session.get(MemberRow, (conversation_id, user_id)) is not None:
                    return
                if await session.get(InvitationRow, (conversation_id, user_id)) is not None:
                    return
                session.add(
                    InvitationRow(
                        conversation_id=conversation_id,
                        user_id=user_id,
                        display_name=display_name,
                        inviter_id=inviter_id,
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            return  # the same invitation raced in, or the conversation was deleted meanwhile: nothing to do

    @_unavailable_on_outage
    async def invitations_of(
        self, user_id: str, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Invitation]:
        query = (
            select(InvitationRow, ConversationRow.title, MemberRow.display_name)
            .join(ConversationRow, ConversationRow.id == InvitationRow.conversation_id)
            .outerjoin(
                MemberRow,
                (MemberRow.conversation_id == InvitationRow.conversation_id)
                & (MemberRow.user_id == InvitationRow.inviter_id),
            )
            .where(InvitationRow.user_id == user_id)
        )
        if before is not None:
            query = query.where(tuple_(InvitationRow.created_at, InvitationRow.conversation_id) < before)
        query = query.order_by(InvitationRow.created_at.desc(), InvitationRow.conversation_id.desc()).limit(limit)
        async with self._db.session() as session:
            return [
                Invitation(row.conversation_id, title, row.inviter_id, inviter_name or "", row.created_at)
                for row, title, inviter_name in (await session.execute(query)).all()
            ]

    @_unavailable_on_outage
    async def accept(self, conversation_id: uuid.UUID, user_id: str, limit: int) -> bool:
        async with self._db.session() as session, session.begin():
            row = await session.get(InvitationRow, (conversation_id, user_id))
            if row is None:
                return False
            name = row.display_name
            await session.delete(row)
            await join(session, conversation_id, user_id, name, limit)  # a quota error rolls back the delete
            return True

    @_unavailable_on_outage
    async def decline(self, conversation_id: uuid.UUID, user_id: str) -> bool:
        async with self._db.session() as session, session.begin():
            result = await session.execute(
                delete(InvitationRow).where(
                    InvitationRow.conversation_id == conversation_id, InvitationRow.user_id == user_id
                )
            )
            return bool(getattr(result, "rowcount", 0))
