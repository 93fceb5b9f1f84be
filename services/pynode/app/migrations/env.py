"""Alembic environment: every service's tables, migrated over the async engine on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from pynode.app import modules
from pynode.core.db import Base, normalise_url

config = context.config
for module in modules.MODULES:
    module.load_tables()

# Revision ids before the per-service naming rule, adopted in place so existing databases upgrade.
RENAMED = {"0001_users": "auth_0001_users"}


def _adopt_renamed(connection: Any) -> None:
    if not inspect(connection).has_table("alembic_version"):
        return
    for old, new in RENAMED.items():
        connection.execute(
            text("UPDATE alembic_version SET version_num = :new WHERE version_num = :old"), {"old": old, "new": new}
        )


def _run(connection: Any) -> None:
    _adopt_renamed(connection)
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _online() -> None:
    engine = create_async_engine(normalise_url(config.get_main_option("sqlalchemy.url") or ""))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


existing = config.attributes.get("connection")
if existing is not None:
    _run(existing)
else:
    asyncio.run(_online())
