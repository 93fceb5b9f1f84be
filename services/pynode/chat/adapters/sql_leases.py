"""GenerationLeases on SQLAlchemy: the lease columns of streaming replies in the messages table."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import or_, update

from pynode.chat.adapters.sql_chat import MessageRow, message_of_row, tool_calls_json, unavailable_on_outage
from pynode.chat.domain import ERROR, FAILED, STREAMING, ChatMessage
from pynode.core.db import Database, utcnow


class SqlGenerationLeases:
    """Who writes each streaming reply, until when, and whether a member asked to cancel it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @unavailable_on_outage
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

    @unavailable_on_outage
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
                    tool_calls=tool_calls_json(message.tool_calls),
                    lease_owner="",
                    lease_expires_at=None,
                    updated_at=utcnow(),
                )
            )
            return bool(getattr(result, "rowcount", 0))

    @unavailable_on_outage
    async def request_cancel(self, message_id: uuid.UUID) -> bool:
        async with self._db.session() as session, session.begin():
            result = await session.execute(
                update(MessageRow)
                .where(MessageRow.id == message_id, MessageRow.state == STREAMING)
                .values(cancel_requested=True)
            )
            return bool(getattr(result, "rowcount", 0))

    @unavailable_on_outage
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
            return [message_of_row(r) for r in rows]
