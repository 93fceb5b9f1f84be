"""The relational database: one async engine per process, PostgreSQL (psycopg 3) or SQLite (aiosqlite).

On a SQLite file a second, blocking engine runs whole transactions in a worker thread (`Database.transaction`):
aiosqlite makes a trip to its thread for every statement, fetch and commit, and on the hot paths those trips cost
more than the statements.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from pynode.core.settings import SettingsError

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+psycopg")
Result = TypeVar("Result")
BLOCKING_THREADS = 4  # threads and connections for `transaction` on SQLite (it takes one writer at a time)

# Stable constraint names so migrations read the same on both databases.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    """Now, timezone-aware."""
    return datetime.now(UTC)


def normalise_url(url: str) -> str:
    """Accept the common short forms and refuse unknown schemes with the setting's name."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise SettingsError(f"DEVPYNODE_DATABASE_URL: not a database URL ({exc})") from None
    driver = parsed.drivername
    if driver in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif driver == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise SettingsError(
            f"DEVPYNODE_DATABASE_URL: unsupported scheme {driver!r}; use sqlite+aiosqlite:// or postgresql+psycopg://"
        )
    return parsed.render_as_string(hide_password=False)


class Database:
    """Owns the engine and hands out sessions."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        # hide_parameters: a failed statement's message (logged, perhaps with a traceback) must never carry
        # bound values such as password hashes.
        options: dict[str, Any] = {"pool_pre_ping": not self.is_sqlite, "hide_parameters": True}
        if not self.is_sqlite:
            options.update(pool_size=10, max_overflow=10)
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        self._blocking: Engine | None = None
        self._threads: ThreadPoolExecutor | None = None
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            database = make_url(self.url).database
            if database and database != ":memory:":  # a memory database is one connection's own
                self._blocking = create_engine(
                    self.url.replace("+aiosqlite", "", 1),
                    hide_parameters=True,
                    pool_size=BLOCKING_THREADS,
                    max_overflow=0,
                )
                event.listen(self._blocking, "connect", _sqlite_pragmas)
                # Threads of its own: a transaction waiting for SQLite's write lock must not hold a thread that
                # file reads and writes need from the loop's default pool.
                self._threads = ThreadPoolExecutor(BLOCKING_THREADS, "sqlite")
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def transaction(self, work: Callable[[Connection], Result]) -> Result:
        """Run `work` with a plain (blocking) connection in one transaction, committed when it returns: on a
        SQLite file in one trip to a worker thread, elsewhere on the async engine (`run_sync`)."""
        if self._blocking is not None:
            run = functools.partial(self._in_thread, self._blocking, work)
            return await asyncio.get_running_loop().run_in_executor(self._threads, run)
        async with self.engine.begin() as connection:
            return await connection.run_sync(work)

    @staticmethod
    def _in_thread(engine: Engine, work: Callable[[Connection], Result]) -> Result:
        with engine.begin() as connection:
            return work(connection)

    def session(self) -> AsyncSession:
        """A new unit of work; use as `async with db.session() as s, s.begin():`."""
        return self.sessions()

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
        if self._threads is not None:
            self._threads.shutdown(wait=True)
        if self._blocking is not None:
            self._blocking.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit survives the process crashing, and
    # a power cut may lose the last commits but never corrupts the file (SQLite's documented WAL trade-off).
    # FULL cost an fsync per commit, on the path of every message and login; PostgreSQL is the durable choice.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
