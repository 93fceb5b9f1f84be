"""Commands that administer the server's data and settings on its machine: migrate, backup, restore,
config check (a service's own admin commands, such as auth's `signing-keys generate`, come from its module's
`cli_commands`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from pydantic import SecretStr

from pynode.app.cli.common import fail, settings_from
from pynode.app.cli.options import DataDir
from pynode.core import logs
from pynode.core.settings import SettingsError, env_name

config = typer.Typer(help="The effective settings.", no_args_is_help=True)


def backup(
    destination: Annotated[str, typer.Argument(help="A new directory, or s3://BUCKET/PREFIX")],
    data_dir: DataDir = None,
) -> None:
    """Back up the database (pg_dump, or SQLite's backup API) and every stored file, with a manifest of checksums."""
    from pynode.app.backup import BackupError
    from pynode.app.backup import backup as take

    settings = settings_from({"data_dir": data_dir})
    try:
        manifest = take(settings, destination)
    except BackupError as exc:
        fail(str(exc))
    objects = sum(1 for name in manifest["files"] if name.startswith("objects/"))
    print(f"backed up the {manifest['database']['kind']} database and {objects} object(s) to {destination}")


def restore(
    source: Annotated[str, typer.Argument(help="A backup directory, or s3://BUCKET/PREFIX")],
    force: Annotated[bool, typer.Option(help="Replace accounts and files the target already holds")] = False,
    data_dir: DataDir = None,
) -> None:
    """Restore a backup into the configured database and storage (checksums checked first; an occupied target
    is refused without --force)."""
    from pynode.app.backup import BackupError
    from pynode.app.backup import restore as put_back

    settings = settings_from({"data_dir": data_dir})
    try:
        manifest = put_back(settings, source, force=force)
    except BackupError as exc:
        fail(str(exc))
    objects = sum(1 for name in manifest["files"] if name.startswith("objects/"))
    print(
        f"restored the {manifest['database']['kind']} database and {objects} object(s) taken {manifest['created_at']}"
    )


def migrate(data_dir: DataDir = None) -> None:
    """Apply the database migrations of every service (serve does it itself for SQLite)."""
    from sqlalchemy.engine import make_url

    from pynode.app import migrate as migrations
    from pynode.core.db import Database, normalise_url

    settings = settings_from({"data_dir": data_dir})
    logs.configure("WARNING")
    url = settings.stores.resolved_database_url(settings.server.data_dir)
    if url.startswith("sqlite"):
        settings.server.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def revisions() -> set[str]:
        db = Database(url)
        try:
            return await migrations.current(db)
        finally:
            await db.close()

    shown = make_url(normalise_url(url)).render_as_string(hide_password=True)  # also refuses unknown schemes
    try:
        before = asyncio.run(revisions())
        migrations.upgrade(url)
        after = asyncio.run(revisions())
    except Exception as exc:
        cause = getattr(exc, "orig", None) or exc
        fail(f"DEVPYNODE_DATABASE_URL: cannot migrate {shown} ({str(cause).strip().splitlines()[0]})", 2)
    names = ", ".join(sorted(after)) or "none"
    if before == after:
        print(f"devpynode: {shown} was already at the newest revisions ({names})")
    else:
        print(f"devpynode: migrated {shown} to {names} (was {', '.join(sorted(before)) or 'empty'})")


@config.command("check")
def config_check(data_dir: DataDir = None) -> None:
    """Print the effective settings (secrets redacted) and whether they are safe to serve with."""
    settings = settings_from({"data_dir": data_dir})
    for section in settings.sections():
        print(f"[{type(section).__name__}]")
        for name, field in type(section).model_fields.items():
            value = getattr(section, name)
            if isinstance(value, SecretStr):
                shown = "(set, hidden)" if value.get_secret_value() else "(empty)"
            else:
                shown = str(value) if value not in ("", None) else "(empty)"
            source = "env" if name in section.model_fields_set else "default"
            print(f"  {env_name(name):<34} {shown:<40} [{source}] {field.description or ''}".rstrip())
    try:
        settings.check_production_safety()
    except SettingsError as exc:
        fail(str(exc), 2)
    mode = "development mode" if settings.server.dev_mode else "production mode"
    print(f"devpynode: settings are valid ({mode}; services: {', '.join(settings.chosen())})")
