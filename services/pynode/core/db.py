"""The relational database: one async engine per process, PostgreSQL (psycopg 3) or SQLite (aiosqlite).

On a SQLite file a second, blocking engine runs whole transactions in a worker thread (`Database.transaction`):
aiosqlite makes a trip to its thread for every statement, fetch and commit, and on the hot paths those trips cost
more than the statements.

Every call is bounded on the server's side, whatever its caller's deadline: a statement runs at most
`statement_timeout` (PostgreSQL's `statement_timeout`, SQLite's busy timeout for its write lock), a free pooled
connection is waited for at most `pool_timeout`, and a new connection at most CONNECT_SECONDS. Each of those,
and a lost connection, is the domain's `Unavailable` (UNAVAILABLE with RetryInfo), never INTERNAL.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, DateTime, Engine, Executable, MetaData, create_engine, event, exc, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from pynode.core import tracing
from pynode.core.errors import Unavailable
from pynode.core.executors import BlockingPool, Executors
from pynode.core.settings import SettingsError
from pynode.core.timestamps import utcnow as utcnow  # the tables' adapters take the clock from here too

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+psycopg")
Result = TypeVar("Result")
BLOCKING_THREADS = 4  # threads and connections for `transaction` on SQLite (it takes one writer at a time)
STATEMENT_SECONDS = 10.0
POOL_SECONDS = 5.0
CONNECT_SECONDS = 5
RETRY_AFTER_SECONDS = 1.0
# A pooled connection idle longer than this is pinged before use (SQLAlchemy's pre-ping, but not on every
# checkout): one used a moment ago answered a moment ago, and a ping per checkout was a round trip on the path
# of every answer's first token.
PING_IDLE_SECONDS = 1.0

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


def _unavailable(what: str) -> Unavailable:
    return Unavailable(
        f"the database {what}; retry shortly", retry_after=RETRY_AFTER_SECONDS, reason="DATABASE_UNAVAILABLE"
    )


def _outage(context: ExceptionContext) -> None:
    """`handle_error` hook: a timeout or a lost connection is UNAVAILABLE; anything else stays as it is (a bug)."""
    error = context.original_exception
    if not isinstance(error, Exception):
        # A cancelled task (CancelledError) reaches this hook flagged as a disconnect, since SQLAlchemy
        # invalidates a connection interrupted by a BaseException. It must stay a cancellation: turned into
        # UNAVAILABLE, a cancelled writer would take it for an outage and retry forever.
        return
    if isinstance(error, psycopg.errors.QueryCanceled):  # statement_timeout
        raise _unavailable("took too long to answer") from None
    if isinstance(error, psycopg.errors.LockNotAvailable):
        raise _unavailable("is busy") from None
    if isinstance(error, psycopg.OperationalError) or context.is_disconnect:
        raise _unavailable("is unreachable") from None
    if isinstance(error, sqlite3.OperationalError) and ("locked" in str(error) or "busy" in str(error)):
        raise _unavailable("is busy (another writer held it past the busy timeout)") from None


class BoundedPool(AsyncAdaptedQueuePool):
    """The async pool, whose wait for a free connection past `pool_timeout` is UNAVAILABLE."""

    # SQLAlchemy names a pool's logger after its class: keep it under `sqlalchemy.pool`, quiet unless asked.
    _sqla_logger_namespace = "sqlalchemy.pool.impl.AsyncAdaptedQueuePool"

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except exc.TimeoutError:
            raise _unavailable("has no free connection (every pooled one is busy)") from None


def _ping_when_idle(engine: Engine) -> None:
    """Pre-ping pooled connections that sat idle past PING_IDLE_SECONDS. A dead one
    invalidates the pool, as SQLAlchemy's own pre-ping does, and the checkout is retried on a new connection: a
    database restart still costs no call. A connection checked in a moment ago is used as it is; should the
    database have gone in that moment, the statement fails as UNAVAILABLE and the pool is renewed."""
    dialect = engine.dialect

    def checked_in(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_SECONDS:  # a new connection, or one just used
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise exc.InvalidatePoolError() from None
            raise

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checked_out)


class Database:
    """Owns the engine and hands out sessions."""

    def __init__(
        self,
        url: str,
        statement_timeout: float = STATEMENT_SECONDS,
        pool_timeout: float = POOL_SECONDS,
        executors: Executors | None = None,
    ) -> None:
        """`executors` holds the SQLite file's blocking threads (the app's, closed after the database); without
        it the database has pools of its own, closed with it (command-line tools, tests)."""
        pools = Executors() if executors is None else executors
        self._own_executors = pools if executors is None else None
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        # hide_parameters: a failed statement's message (logged, perhaps with a traceback) must never carry
        # bound values such as password hashes.
        options: dict[str, Any] = {"hide_parameters": True}
        if not self.is_sqlite:
            connect: dict[str, Any] = {"connect_timeout": CONNECT_SECONDS}
            if statement_timeout > 0:  # per connection, so also inside every transaction
                connect["options"] = f"-c statement_timeout={max(1, round(statement_timeout * 1000))}"
            options.update(
                pool_size=10, max_overflow=10, pool_timeout=pool_timeout, poolclass=BoundedPool, connect_args=connect
            )
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        event.listen(self.engine.sync_engine, "handle_error", _outage)
        if not self.is_sqlite:
            _ping_when_idle(self.engine.sync_engine)
        tracing.instrument_engine(self.engine)  # a span per statement when traces are on
        self._blocking: Engine | None = None
        self._threads: BlockingPool | None = None
        if self.is_sqlite:
            pragmas = functools.partial(_sqlite_pragmas, busy_ms=max(1, round(statement_timeout * 1000)))
            event.listen(self.engine.sync_engine, "connect", pragmas)
            database = make_url(self.url).database
            if database and database != ":memory:":  # a memory database is one connection's own
                self._blocking = create_engine(
                    self.url.replace("+aiosqlite", "", 1),
                    hide_parameters=True,
                    pool_size=BLOCKING_THREADS,
                    max_overflow=0,
                )
                event.listen(self._blocking, "connect", pragmas)
                event.listen(self._blocking, "handle_error", _outage)
                tracing.instrument_engine(self._blocking)
                # A pool of its own: a transaction waiting for SQLite's write lock must not hold a thread that
                # other blocking work (file reads and writes) needs.
                self._threads = pools.pool("sqlite", BLOCKING_THREADS)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # The same pool, each checkout in autocommit (psycopg's flag, set and reset without a round trip).
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    async def transaction(self, work: Callable[[Connection], Result]) -> Result:
        """Run `work` with a plain (blocking) connection in one transaction, committed when it returns: on a
        SQLite file in one trip to a worker thread, elsewhere on the async engine (`run_sync`)."""
        if self._blocking is not None and self._threads is not None:
            return await self._threads.run(self._in_thread, self._blocking, work)
        async with self.engine.begin() as connection:
            return await connection.run_sync(work)

    async def statement(self, statement: Executable, parameters: dict[str, Any] | None = None) -> None:
        """Run one statement as a transaction of its own. On PostgreSQL it runs in autocommit, where a single
        statement is atomic anyway: one round trip, without the BEGIN and the COMMIT around it. (On SQLite
        through `transaction`: one trip to a worker thread.)"""
        if self._blocking is not None or self.is_sqlite:
            await self.transaction(lambda connection: connection.execute(statement, parameters))
            return
        async with self._autocommit.connect() as connection:
            await connection.execute(statement, parameters)

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
        if self._own_executors is not None:
            await self._own_executors.close()
        if self._blocking is not None:
            self._blocking.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, busy_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit survives the process crashing, and
    # a power cut may lose the last commits but never corrupts the file (SQLite's documented WAL trade-off).
    # FULL cost an fsync per commit, on the path of every message and login; PostgreSQL is the durable choice.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")  # the statement timeout's SQLite form
    cursor.close()
