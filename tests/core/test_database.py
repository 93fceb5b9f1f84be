"""Database.transaction: one transaction of plain SQLAlchemy work, committed on return, rolled back on error,
and seen by the async engine at once (a SQLite file runs it on a blocking engine in a thread)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from pynode.core.db import Database


@pytest.mark.parametrize("where", ["file", "memory"])
async def test_work_commits_on_return_and_rolls_back_on_error(tmp_path: Path, where: str) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}" if where == "file" else "sqlite+aiosqlite:///:memory:")
    try:
        await db.transaction(lambda c: c.execute(text("CREATE TABLE t (v INTEGER)")))

        def add(value: int, fail: bool = False) -> Callable[[Connection], int]:
            def work(connection: Connection) -> int:
                connection.execute(text("INSERT INTO t VALUES (:v)"), {"v": value})
                if fail:
                    raise RuntimeError("after the insert")
                return int(connection.execute(text("SELECT count(*) FROM t")).scalar_one())

            return work

        assert await db.transaction(add(1)) == 1
        with pytest.raises(RuntimeError):
            await db.transaction(add(2, fail=True))
        async with db.engine.connect() as connection:  # the async engine sees the commit, not the rollback
            values = (await connection.execute(text("SELECT v FROM t"))).scalars().all()
        assert values == [1]
    finally:
        await db.close()
