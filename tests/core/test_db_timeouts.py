"""Database calls are bounded on the server's side: a blocked statement or an exhausted pool is UNAVAILABLE with
RetryInfo after the configured timeout, never a hang until the client's deadline (or for ever without one)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from devpynode.auth.v1 import auth_pb2
from google.rpc import error_details_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from pynode.core.db import Database
from pynode.core.errors import Unavailable
from tests.backends import PG_ADMIN_URL, Backend
from tests.client import fails

# Far beyond the statement timeout: a call still waiting then is the hang this file is about.
CLIENT_DEADLINE = 60.0


@contextlib.contextmanager
def users_locked(backend: Backend, data_dir: Path) -> Iterator[None]:
    """Another client holds the users table (PostgreSQL) or the whole database file's write lock (SQLite)."""
    if backend.name == "real":
        with psycopg.connect(backend.database_url.replace("+psycopg", "")) as conn:
            conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            yield
            conn.rollback()
        return
    conn = sqlite3.connect(data_dir / "devpynode.db", isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def test_a_blocked_statement_is_unavailable_after_the_statement_timeout(
    backend: Backend, strict: Any, tmp_path: Path
) -> None:
    client = await strict(database_statement_timeout_seconds=0.5)
    await client.register()  # the schema and the pool are warm
    with users_locked(backend, tmp_path / "0"):
        call = client.auth.Register(
            auth_pb2.RegisterRequest(
                email="blocked@example.com", password="a long enough password", display_name="Blocked"
            ),
            metadata=client.md(""),
            timeout=CLIENT_DEADLINE,
        )
        error = await fails(call)
    assert error.code == grpc.StatusCode.UNAVAILABLE, error
    assert error.reason == "DATABASE_UNAVAILABLE"
    assert error.detail(error_details_pb2.RetryInfo).retry_delay.ToMilliseconds() > 0
    await client.register()  # the lock gone, the same call works again


async def test_an_exhausted_pool_is_unavailable_after_the_pool_timeout() -> None:
    db = Database(PG_ADMIN_URL, statement_timeout=5.0, pool_timeout=0.2)
    held: list[AsyncConnection] = []
    try:
        try:
            for _ in range(20):  # pool_size + max_overflow
                connection = await db.engine.connect()
                held.append(connection)
                await connection.execute(text("SELECT 1"))
        except psycopg.OperationalError as exc:  # pragma: no cover - the machine's server is full
            pytest.skip(f"PostgreSQL refused 20 connections: {exc}")
        with pytest.raises(Unavailable) as raised:
            async with db.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert raised.value.reason == "DATABASE_UNAVAILABLE" and raised.value.retry_after
    finally:
        for connection in held:
            await connection.close()
        await db.close()


async def test_a_statement_past_the_timeout_is_unavailable() -> None:
    db = Database(PG_ADMIN_URL, statement_timeout=0.2)
    try:
        with pytest.raises(Unavailable):
            async with db.engine.connect() as connection:
                await connection.execute(text("SELECT pg_sleep(30)"))
        async with db.engine.connect() as connection:  # the pool is still usable
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.close()


def test_unrelated_database_errors_stay_what_they_are(tmp_path: Path) -> None:
    async def run() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
        try:
            with pytest.raises(Exception) as raised:
                async with db.engine.connect() as connection:
                    await connection.execute(text("SELECT * FROM no_such_table"))
            assert not isinstance(raised.value, Unavailable)  # a bug is INTERNAL, not "retry shortly"
        finally:
            await db.close()

    asyncio.run(run())


async def test_a_statement_cancelled_mid_way_stays_a_cancellation() -> None:
    """SQLAlchemy flags a statement interrupted by a BaseException as a disconnect; the outage hook must not turn
    that cancellation into UNAVAILABLE (a cancelled writer would take it for an outage and retry for ever)."""
    db = Database(PG_ADMIN_URL)
    try:

        async def sleep_in_the_database() -> None:
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(30)"))

        task = asyncio.ensure_future(sleep_in_the_database())
        await asyncio.sleep(0.5)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        assert task in done, "the cancelled statement did not end"
        assert task.cancelled(), f"the cancellation became {task.exception()!r}"
    finally:
        await db.close()
