"""Pooled PostgreSQL connections: pinged before use only after sitting idle, and a dead one is replaced then
without failing the call; a single statement runs in autocommit (one round trip)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from pynode.core import db as db_module
from pynode.core.db import Database
from tests.backends import Backend


def _drop_connections(url: str) -> int:
    """What a database restart does to the pool: every other session of this database ends."""
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
        return int(found[0]) if found else 0


async def test_an_idle_connection_the_database_dropped_is_replaced_before_use(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend.name != "real":
        pytest.skip("a pool of network connections is PostgreSQL's")
    monkeypatch.setattr(db_module, "PING_IDLE_SECONDS", 0.0)  # every pooled connection counts as idle
    database = Database(backend.database_url)
    try:
        await database.ping()  # one connection, now pooled
        assert _drop_connections(backend.database_url) >= 1
        async with database.session() as session:  # pinged, found dead, replaced: the call goes through
            assert (await session.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await database.close()


async def test_a_single_statement_commits_on_its_own(backend: Backend, tmp_path: object) -> None:
    url = backend.database_url or f"sqlite+aiosqlite:///{tmp_path}/statement.db"
    database = Database(url)
    table = f"statement_{abs(hash(url)) % 10**8}"  # made here, digits only: the f-strings below are safe
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text(f"CREATE TABLE {table} (n INTEGER)"))
        await database.statement(text(f"INSERT INTO {table} (n) VALUES (1), (2)"))  # noqa: S608
        await database.statement(text(f"INSERT INTO {table} (n) VALUES (:n)"), {"n": 4})  # noqa: S608
        async with database.session() as session:  # another connection sees both: they were committed
            assert (await session.execute(text(f"SELECT sum(n) FROM {table}"))).scalar() == 7  # noqa: S608
        async with database.engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {table}"))
    finally:
        await database.close()
