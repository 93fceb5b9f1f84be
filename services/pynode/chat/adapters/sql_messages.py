"""MessageRepository on SQLAlchemy: messages and their reactions."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from pynode.chat.adapters.sql_chat import (
    ConversationRow,
    MessageRow,
    ReactionRow,
    message_of_row,
    row_values,
    unavailable_on_outage,
)
from pynode.chat.domain import STREAMING, TOOL, ChatMessage
from pynode.core.db import Database, utcnow


@functools.cache
def _exchange_statement(columns: tuple[str, ...], rows: int, flush: bool) -> Any:
    """INSERT of `rows` messages in a WITH clause, under an UPDATE of their conversation's `updated_at`: built
    once per shape, with bound parameters (`<column>_<row>`, `conversation`, `touched`). (Built per call with its
    values inline, SQLAlchemy compiled it anew every time: 3 ms of the first token's path.) Without `flush`, the
    statement also turns `synchronous_commit` off for its own transaction (`set_config(..., true)`, evaluated
    before the commit it governs): still one round trip."""
    table = MessageRow.__table__.c
    values = [{name: bindparam(f"{name}_{i}", type_=table[name].type) for name in columns} for i in range(rows)]
    stored = insert(MessageRow).values(values).cte("stored")
    conversation = ConversationRow.__table__.c
    where = conversation.id == bindparam("conversation", type_=conversation.id.type)
    if not flush:
        where = and_(where, func.set_config("synchronous_commit", "off", True).isnot(None))
    return (
        update(ConversationRow)
        .where(where)
        .values(updated_at=bindparam("touched", type_=conversation.updated_at.type))
        .add_cte(stored)
    )


class SqlMessages:
    """The messages and reactions tables. `lease_owner`/`lease_seconds` stamp the replies this process starts;
    `fast_exchange_commit` commits new exchanges without waiting for the disk (DEVPYNODE_CHAT_FAST_EXCHANGE_COMMIT)."""

    def __init__(
        self, db: Database, lease_owner: str, lease_seconds: float, fast_exchange_commit: bool = False
    ) -> None:
        self._db = db
        self._owner = lease_owner
        self._lease = timedelta(seconds=lease_seconds)
        self._flush_exchanges = not fast_exchange_commit

    @unavailable_on_outage
    async def add_exchange(self, message: ChatMessage, reply: ChatMessage | None) -> bool:
        rows = [row_values(message, "", None)]
        if reply is not None:
            rows.append(row_values(reply, self._owner, utcnow() + self._lease))
        touch = (
            update(ConversationRow)
            .where(ConversationRow.id == message.conversation_id)
            .values(updated_at=message.created_at)
        )

        def store(connection: Connection) -> None:
            connection.execute(insert(MessageRow), rows)
            connection.execute(touch)

        try:  # on the path of every answer's first token
            if self._db.is_sqlite:  # one trip to a worker thread (SQLite has no INSERT inside WITH)
                await self._db.transaction(store)
            else:
                # One statement, so one round trip in autocommit: the rows inserted in a WITH clause, the
                # conversation touched by the statement itself (atomic as a whole; no BEGIN, no COMMIT).
                parameters = {f"{name}_{i}": value for i, row in enumerate(rows) for name, value in row.items()}
                parameters.update(conversation=message.conversation_id, touched=message.created_at)
                statement = _exchange_statement(tuple(rows[0]), len(rows), self._flush_exchanges)
                await self._db.statement(statement, parameters)
        except IntegrityError:
            return False  # the same client_request_id raced in: the caller reads the winner
        return True

    @unavailable_on_outage
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
            return message_of_row(row), (message_of_row(reply) if reply is not None else None)

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

    @unavailable_on_outage
    async def message(self, message_id: uuid.UUID) -> ChatMessage | None:
        async with self._db.session() as session:
            row = await session.get(MessageRow, message_id)
            if row is None:
                return None
            return message_of_row(row, (await self._reactions_of(session, [row.id])).get(row.id))

    @unavailable_on_outage
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
            return [message_of_row(r, reactions.get(r.id)) for r in rows]

    @unavailable_on_outage
    async def history(
        self, conversation_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[ChatMessage]:
        table = MessageRow.__table__
        query = select(table).where(table.c.conversation_id == conversation_id)
        if before is not None:
            query = query.where(tuple_(table.c.created_at, table.c.id) < before)
        query = query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit)
        rows = await self._db.transaction(lambda connection: connection.execute(query).all())
        return [message_of_row(row) for row in rows]  # type: ignore[arg-type]

    @unavailable_on_outage
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
                # an AI reply that only called tools has no text, but belongs in the prompt
                or_(table.c.text != "", table.c.tool_calls != "[]", table.c.role == TOOL),
            )
            .order_by(*newest_first)
            .limit(limit)
            .subquery()
        )
        query = (
            select(table).join(reach, reach.c.id == table.c.id).where(reach.c.before_it < chars).order_by(*newest_first)
        )
        rows = await self._db.transaction(lambda connection: connection.execute(query).all())
        return [message_of_row(row) for row in rows]  # type: ignore[arg-type]

    @unavailable_on_outage
    async def streaming(self, conversation_id: uuid.UUID) -> list[ChatMessage]:
        query = (
            select(MessageRow)
            .where(MessageRow.conversation_id == conversation_id, MessageRow.state == STREAMING)
            .order_by(MessageRow.created_at, MessageRow.id)
        )
        async with self._db.session() as session:
            return [message_of_row(r) for r in (await session.execute(query)).scalars()]

    @unavailable_on_outage
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

    @unavailable_on_outage
    async def reactions(self, message_id: uuid.UUID) -> dict[str, set[str]]:
        async with self._db.session() as session:
            return (await self._reactions_of(session, [message_id])).get(message_id, {})
