"""Applies Alembic migrations programmatically (no alembic.ini needed).

One environment (`app/migrations/env.py`) over every service's versions folder
(`pynode/<service>/migrations/`). Each service's revisions form their own branch, labelled with the
service's name; revision ids are `<service>_<NNNN>_<what>` (e.g. `auth_0001_users`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from pynode.app import modules
from pynode.core.db import Database, normalise_url
from pynode.core.executors import BlockingPool

ENVIRONMENT = Path(__file__).resolve().parent / "migrations"


def version_locations() -> list[str]:
    """Every service's versions folder (all services: the schema is shared by every process)."""
    return [str(m.migrations) for m in modules.MODULES if m.migrations is not None]


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at our environment, every service's migrations and `url`."""
    config = Config()
    config.set_main_option("script_location", str(ENVIRONMENT))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(version_locations()))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def heads(url: str) -> set[str]:
    """The newest revision of every service."""
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config(url)).get_heads())


def upgrade(url: str) -> None:
    """Migrate the database at `url` to every service's newest revision (blocking; runs its own loop)."""
    command.upgrade(alembic_config(url), "heads")


async def upgrade_async(url: str) -> None:
    """`upgrade` from async code: Alembic's env runs its own loop, so in a thread of its own (once, at start;
    not the loop's default pool, which other blocking work would then share with it)."""
    pool = BlockingPool("migrate", 1)
    try:
        await pool.run(upgrade, url)
    finally:
        pool.executor.shutdown(wait=False)  # its one thread ends when the migration does


async def current(db: Database) -> set[str]:
    """The revisions the database is at."""
    from alembic.runtime.migration import MigrationContext

    def read(connection: Any) -> set[str]:
        return set(MigrationContext.configure(connection).get_current_heads())

    async with db.engine.connect() as conn:
        return await conn.run_sync(read)


async def is_current(db: Database) -> bool:
    """Whether the database is at the newest migration of every service."""
    return await current(db) == heads(db.url)
