"""memory:// that survives a restart: the in-process KeyValueStore with a copy of every key in a SQLite file.

The embedded default keeps sessions, refresh token families and lockouts in the key-value store; in memory only,
every restart signed everybody out. Here memory stays the store every call reads (the same speed and the same
one-loop atomicity as `memory_kv.py`), and each change of a key is written behind, in order, by one thread of
its own to `kv.sqlite` in the data directory; the file is read back when the process starts. Expiry is kept as
wall-clock time on disk (monotonic time does not survive a restart). A crash may lose the last changes still
queued (a few milliseconds' worth), never the file: one process owns it (memory:// is one process anyway).
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import sqlite3
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pynode.core.adapters.memory_kv import MemoryKeyValueStore

log = logging.getLogger("pynode.kv")

FILE_NAME = "kv.sqlite"
_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL, expires REAL)"
# A row as written: kind "v" (a string) or "s" (a set, as a JSON list), expiry as epoch seconds or None.
Row = tuple[str, str, float | None]


class SqliteKeyValueStore(MemoryKeyValueStore):
    """The memory store, loaded from and written behind to one SQLite file (see the module's docstring)."""

    def __init__(self, path: Path, prefix: str = "") -> None:
        super().__init__(prefix)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        # One thread, so the writes land in the order they were made; it alone uses `_connection`.
        self._writer = ThreadPoolExecutor(1, "kv-sqlite")
        self._connection: sqlite3.Connection | None = None
        self._last: Future[None] | None = None
        self._load()

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA busy_timeout=5000")
        connection.execute(_SCHEMA)
        return connection

    def _load(self) -> None:
        """Read this prefix's live keys (at startup, before anything is served); drop the expired ones."""
        wall, mono = time.time(), time.monotonic()
        connection = self._open()
        try:
            pattern = self._prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = connection.execute(
                "SELECT key, kind, value, expires FROM kv WHERE key LIKE ? ESCAPE '\\'", (pattern,)
            ).fetchall()
            for key, kind, value, expires in rows:
                if expires is not None and expires <= wall:
                    continue
                loaded: Any = builtins.set(json.loads(value)) if kind == "s" else value
                self._data[key] = (loaded, None if expires is None else mono + (expires - wall))
            connection.execute("DELETE FROM kv WHERE expires IS NOT NULL AND expires <= ?", (wall,))
        finally:
            connection.close()

    def _changed(self, full_key: str) -> None:
        entry = self._data.get(full_key)
        row: Row | None = None
        if entry is not None:
            value, expires = entry
            kind, text = ("s", json.dumps(sorted(value))) if isinstance(value, builtins.set) else ("v", str(value))
            row = (kind, text, None if expires is None else time.time() + (expires - time.monotonic()))
        self._last = self._writer.submit(self._write, full_key, row)

    def _write(self, full_key: str, row: Row | None) -> None:
        try:
            self._write_row(full_key, row)
        except sqlite3.Error:  # memory still has it; only the next start would miss this change
            log.warning("could not keep a key-value change in %s", self._path, exc_info=True)

    def _write_row(self, full_key: str, row: Row | None) -> None:
        if self._connection is None:
            self._connection = self._open()
        if row is None:
            self._connection.execute("DELETE FROM kv WHERE key = ?", (full_key,))
        else:
            self._connection.execute(
                "INSERT INTO kv (key, kind, value, expires) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, value = excluded.value, "
                "expires = excluded.expires",
                (full_key, *row),
            )

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def flush(self) -> None:
        """Wait until every change made so far is in the file."""
        last = self._last
        if last is not None:
            await asyncio.wrap_future(last)

    async def close(self) -> None:
        """Write what is queued and close the file; the keys stay in it for the next start."""
        await asyncio.wrap_future(self._writer.submit(self._close_connection))  # after every queued write
        self._writer.shutdown(wait=False)
        self._data.clear()
