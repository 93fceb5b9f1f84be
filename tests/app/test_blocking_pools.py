"""Blocking work runs in the process's named pools, built by bootstrap and closed after every module (#20)."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Connection, text

from pynode.app.bootstrap import build
from pynode.auth.module import AuthComponents
from tests.backends import Backend
from tests.conftest import make_settings


async def test_bcrypt_and_sqlite_threads_are_the_apps_named_pools(tmp_path: Path) -> None:
    embedded = Backend("embedded", "", "memory://", "t:")
    platform = await build(make_settings(embedded, tmp_path))
    try:
        executors = platform.infra.executors
        assert {"bcrypt", "sqlite"} <= set(executors.names())
        parts = platform.component("auth")
        assert isinstance(parts, AuthComponents)
        assert await parts.hasher.verify("warm up", None) is False  # runs in the shared bcrypt pool

        def thread_name(connection: Connection) -> str:
            connection.execute(text("SELECT 1"))
            return threading.current_thread().name

        assert (await platform.infra.db.transaction(thread_name)).startswith("sqlite")
    finally:
        await platform.close()
    assert executors.names() == []  # closed with the platform
