"""Every service's tables and the migrations agree, on SQLite and PostgreSQL: autogenerate finds nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from pynode.app import migrate, modules
from pynode.core.db import Base, Database
from tests.backends import PG_ADMIN_URL, Backend, unique


@pytest.fixture
def empty_database(backend: Backend, tmp_path: Path) -> Iterator[str]:
    """A database no migration has touched: a new SQLite file, or a new PostgreSQL database (dropped after)."""
    if not backend.database_url:
        yield f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}"
        return
    name = unique("devpynode_schema_")
    plain = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_models_and_migrations_agree(empty_database: str) -> None:
    url = empty_database
    await migrate.upgrade_async(url)
    for module in modules.MODULES:
        module.load_tables()
    db = Database(url)
    try:
        assert await migrate.is_current(db)

        def differences(connection: Any) -> list[Any]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))

        async with db.engine.connect() as connection:
            found = await connection.run_sync(differences)
        assert found == [], f"models and migrations differ: {found}"
    finally:
        await db.close()


def test_revisions_follow_one_naming_rule() -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrate.alembic_config("sqlite+aiosqlite:///:memory:"))
    for revision in scripts.walk_revisions():
        service = revision.revision.split("_")[0]
        assert service in modules.names(), revision.revision
        number = revision.revision.split("_")[1]
        assert number.isdigit() and len(number) == 4, revision.revision
        if revision.down_revision is None:
            assert revision.branch_labels == {service}, revision.revision
