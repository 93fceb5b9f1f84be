"""`devpynode backup` and `devpynode restore`: the database and the object storage, with a manifest of checksums.

A backup is a directory (or the same layout under `s3://BUCKET/PREFIX`):

    manifest.json        what was taken, when, the schema revisions, and a SHA-256 per file
    database.dump        PostgreSQL, `pg_dump --format=custom`   (or database.sqlite: SQLite's backup API)
    <folder>/<key>       every object a module keeps outside the database, through its `BacksUp` hook
                         (files: objects/users/<id>/uploads/<id>, thumbnails; sessions' parts excluded)

Restore checks every checksum before it writes anything, and refuses a target that already holds rows or
objects unless told to replace them (`--force`). `s3://` homes are reached through the module that speaks S3.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from pynode.app import modules
from pynode.app.settings import Settings
from pynode.core.module import BacksUp, BackupError, BackupLocation, BackupSource
from pynode.core.settings import SettingsError

__all__ = ["BackupError", "backup", "restore"]  # BackupError: the hooks' error, which the CLI catches

FORMAT = 1
CHUNK = 1024 * 1024


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _libpq(url: str) -> str:
    """The SQLAlchemy URL as libpq takes it (pg_dump, pg_restore)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# --- what modules keep outside the database -------------------------------------------------------------


def _sources(settings: Settings) -> dict[str, BackupSource]:
    """Each module's stored objects (the `BacksUp` hook), by its folder in the backup."""
    found: dict[str, BackupSource] = {}
    try:
        for module in modules.MODULES:
            if isinstance(module, BacksUp):
                found[module.backup_folder] = module.backup_source(
                    settings.section(module.name), settings.server.data_dir
                )
    except BaseException:
        _close(found)
        raise
    return found


def _close(sources: dict[str, BackupSource]) -> None:
    for source in sources.values():
        source.close()


def _remote(settings: Settings, url: str) -> BackupLocation | None:
    """The remote home a module can reach for `url` (s3://BUCKET/PREFIX), or None for a directory."""
    if "://" not in url:
        return None
    for module in modules.MODULES:
        if isinstance(module, BacksUp):
            found = module.backup_location(settings.section(module.name), url)
            if found is not None:
                return found
    raise BackupError(f"no service can keep backups at {url}; use a directory or s3://BUCKET/PREFIX")


# --- backup -------------------------------------------------------------------------------------------------


def backup(settings: Settings, destination: str) -> dict[str, Any]:
    """Take a backup into `destination` (a new or empty directory, or s3://BUCKET/PREFIX); returns the manifest."""
    location = _remote(settings, destination)
    if location is not None:
        with tempfile.TemporaryDirectory(prefix="devpynode-backup-") as staging:
            manifest = _take(settings, Path(staging))
            location.upload(Path(staging))
            return manifest
    target = Path(destination)
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty; back up into a new directory")
    target.mkdir(parents=True, exist_ok=True)
    return _take(settings, target)


def _take(settings: Settings, target: Path) -> dict[str, Any]:
    from pynode.app import migrate

    url = settings.stores.resolved_database_url(settings.server.data_dir)
    entries: dict[str, str] = {}
    if url.startswith("sqlite"):
        source = Path(make_url(url).database or "")
        if not source.exists():
            raise BackupError(f"no database at {source}")
        dump = target / "database.sqlite"
        live, snapshot = sqlite3.connect(source), sqlite3.connect(dump)
        try:
            live.backup(snapshot)  # consistent while the platform keeps writing
        finally:
            snapshot.close()
            live.close()
        kind = "sqlite"
    else:
        dump = target / "database.dump"
        _run(["pg_dump", "--format=custom", "--no-owner", f"--file={dump}", _libpq(url)], "pg_dump")
        kind = "postgresql"
    entries[dump.name] = _sha256(dump)
    sources = _sources(settings)
    try:
        for folder, objects in sources.items():
            for key in objects.stored_keys():
                kept = target / folder / key
                objects.fetch(key, kept)
                entries[f"{folder}/{key}"] = _sha256(kept)
    finally:
        _close(sources)
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "database": {"kind": kind, "file": dump.name, "revisions": sorted(migrate.heads(url))},
        "storage": ", ".join(objects.where for objects in sources.values()),
        "files": entries,
    }
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - our own command
    except FileNotFoundError:
        raise BackupError(
            f"{what} is not installed (PostgreSQL's client tools: apt-get install postgresql-client)"
        ) from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise BackupError(f"{what}: {first}")


# --- restore ---------------------------------------------------------------------------------------------


def restore(settings: Settings, source: str, *, force: bool = False) -> dict[str, Any]:
    """Restore the backup at `source` into the configured database and storage; returns its manifest."""
    location = _remote(settings, source)
    if location is not None:
        with tempfile.TemporaryDirectory(prefix="devpynode-restore-") as staging:
            location.download(Path(staging))
            return _put_back(settings, Path(staging), force)
    if not (Path(source) / "manifest.json").exists():
        raise BackupError(f"no backup at {source} (manifest.json is missing)")
    return _put_back(settings, Path(source), force)


def _put_back(settings: Settings, backup_dir: Path, force: bool) -> dict[str, Any]:
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format')!r}")
    for name, expected in manifest["files"].items():  # every byte checked before anything is written
        path = backup_dir / name
        if not path.exists() or _sha256(path) != expected:
            raise BackupError(f"the backup is damaged: {name} is missing or does not match its SHA-256")
    url = settings.stores.resolved_database_url(settings.server.data_dir)
    kind = "sqlite" if url.startswith("sqlite") else "postgresql"
    if kind != manifest["database"]["kind"]:
        raise BackupError(f"the backup holds a {manifest['database']['kind']} database; this platform uses {kind}")
    sources = _sources(settings)
    try:
        kept = {name.partition("/")[0] for name in manifest["files"] if "/" in name}
        if kept - set(sources):
            raise BackupError(f"the backup holds {', '.join(sorted(kept - set(sources)))}, which no service here keeps")
        occupied = _has_rows(url) or any(any(True for _ in s.stored_keys()) for s in sources.values())
        if occupied and not force:
            raise BackupError(
                "the target already holds accounts or files; restore into empty stores, or pass --force to replace them"
            )
        if kind == "sqlite":
            target = Path(make_url(url).database or "")
            target.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("-wal", "-shm"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(backup_dir / manifest["database"]["file"], target)
        else:
            _run(
                ["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction",
                 f"--dbname={_libpq(url)}", str(backup_dir / manifest["database"]["file"])],
                "pg_restore",
            )  # fmt: skip
        for name in manifest["files"]:
            folder, _, key = name.partition("/")
            if key:
                sources[folder].store(key, backup_dir / name)
    finally:
        _close(sources)
    return dict(manifest)


def _has_rows(url: str) -> bool:
    """Whether any table of any service holds a row (an account, a file, ...): the target is not empty."""
    from sqlalchemy import create_engine, inspect, literal, select, table

    sync_url = make_url(url)
    sync_url = sync_url.set(drivername="sqlite" if url.startswith("sqlite") else "postgresql+psycopg")
    if url.startswith("sqlite") and not Path(sync_url.database or "").exists():
        return False
    engine = create_engine(sync_url)
    try:
        with engine.connect() as connection:
            names = [n for n in inspect(connection).get_table_names() if n != "alembic_version"]
            return any(connection.execute(select(literal(1)).select_from(table(n)).limit(1)).first() for n in names)
    except Exception as exc:
        raise SettingsError(f"DEVPYNODE_DATABASE_URL: cannot reach the database ({type(exc).__name__})") from None
    finally:
        engine.dispose()
