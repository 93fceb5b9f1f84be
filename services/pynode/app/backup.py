"""`devpynode backup` and `devpynode restore`: the database and the object storage, with a manifest of checksums.

A backup is a directory (or the same layout under `s3://BUCKET/PREFIX`):

    manifest.json        what was taken, when, the schema revisions, and a SHA-256 per file
    database.dump        PostgreSQL, `pg_dump --format=custom`   (or database.sqlite: SQLite's backup API)
    objects/<key>        every stored object (users/<id>/uploads/<id>, thumbnails), sessions' parts excluded

Restore checks every checksum before it writes anything, and refuses a target that already holds accounts or
objects unless told to replace them (`--force`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sqlalchemy.engine import make_url

from pynode.app.settings import Settings
from pynode.core.settings import SettingsError
from pynode.files.adapters.s3_store import S3Objects
from pynode.files.settings import FilesSettings

FORMAT = 1
CHUNK = 1024 * 1024


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _libpq(url: str) -> str:
    """The SQLAlchemy URL as libpq takes it (pg_dump, pg_restore)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# --- object storage ------------------------------------------------------------------------------------


class Objects:
    """The platform's object storage, local or S3, as backups see it: keys in, bytes out."""

    def __init__(self, files: FilesSettings, data_dir: Path) -> None:
        parsed = urlparse(files.storage_url)
        self.s3: S3Objects | None = None
        self.root: Path | None = None
        if parsed.scheme == "s3":
            self.s3 = S3Objects(
                parsed.netloc,
                files.s3_endpoint_url,
                files.s3_access_key.get_secret_value(),
                files.s3_secret_key.get_secret_value(),
                files.s3_region,
            )
            self.where = f"s3://{parsed.netloc}"
        else:
            self.root = Path(parsed.path).resolve() if files.storage_url else (data_dir / "files").resolve()
            self.where = self.root.as_uri()

    def stored_keys(self) -> Iterator[str]:
        if self.s3 is not None:
            client, bucket = self.s3.client, self.s3.bucket
            if not client.bucket_exists(bucket):
                return
            for found in client.list_objects(bucket, recursive=True):
                name = found.object_name or ""
                if name.startswith("users/"):
                    yield name
        elif self.root is not None and (self.root / "users").exists():
            for path in sorted((self.root / "users").rglob("*")):
                if path.is_file():
                    yield str(path.relative_to(self.root))

    def fetch(self, key: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.s3 is not None:
            self.s3.client.fget_object(self.s3.bucket, key, str(target))
        else:
            assert self.root is not None
            shutil.copyfile(self.root / key, target)

    def store(self, key: str, source: Path) -> None:
        if self.s3 is not None:
            client, bucket = self.s3.client, self.s3.bucket
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)
            client.fput_object(bucket, key, str(source))
        else:
            assert self.root is not None
            final = self.root / key
            final.parent.mkdir(parents=True, exist_ok=True)
            temporary = final.with_name(final.name + ".restoring")
            shutil.copyfile(source, temporary)
            os.replace(temporary, final)

    def close(self) -> None:
        if self.s3 is not None:
            self.s3.shutdown()


# --- where backups live ---------------------------------------------------------------------------------


@dataclass
class Location:
    """A backup's home: a directory, or a prefix in a bucket (staged through a local directory)."""

    url: str
    files: FilesSettings

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    def _bucket(self) -> tuple[S3Objects, str]:
        parsed = urlparse(self.url)
        objects = S3Objects(
            parsed.netloc,
            self.files.s3_endpoint_url,
            self.files.s3_access_key.get_secret_value(),
            self.files.s3_secret_key.get_secret_value(),
            self.files.s3_region,
        )
        return objects, parsed.path.strip("/")

    def upload(self, staged: Path) -> None:
        objects, prefix = self._bucket()
        try:
            self._upload(objects, prefix, staged)
        finally:
            objects.shutdown()

    def _upload(self, objects: S3Objects, prefix: str, staged: Path) -> None:
        client = objects.client
        if not client.bucket_exists(objects.bucket):
            client.make_bucket(objects.bucket)
        if any(True for _ in client.list_objects(objects.bucket, prefix=f"{prefix}/", recursive=True)):
            raise BackupError(f"{self.url} already holds a backup; choose a new prefix")
        for path in sorted(staged.rglob("*")):
            if path.is_file():
                client.fput_object(objects.bucket, f"{prefix}/{path.relative_to(staged)}", str(path))

    def download(self, staged: Path) -> None:
        objects, prefix = self._bucket()
        try:
            self._download(objects, prefix, staged)
        finally:
            objects.shutdown()

    def _download(self, objects: S3Objects, prefix: str, staged: Path) -> None:
        client = objects.client
        found = False
        for item in client.list_objects(objects.bucket, prefix=f"{prefix}/", recursive=True):
            name = item.object_name or ""
            target = staged / name[len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.fget_object(objects.bucket, name, str(target))
            found = True
        if not found:
            raise BackupError(f"no backup at {self.url}")


# --- backup -------------------------------------------------------------------------------------------------


def backup(settings: Settings, destination: str) -> dict[str, Any]:
    """Take a backup into `destination` (a new or empty directory, or s3://BUCKET/PREFIX); returns the manifest."""
    files = settings.section("files")
    assert isinstance(files, FilesSettings)
    location = Location(destination, files)
    if location.is_s3:
        with tempfile.TemporaryDirectory(prefix="devpynode-backup-") as staging:
            manifest = _take(settings, files, Path(staging))
            location.upload(Path(staging))
            return manifest
    target = Path(destination)
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty; back up into a new directory")
    target.mkdir(parents=True, exist_ok=True)
    return _take(settings, files, target)


def _take(settings: Settings, files: FilesSettings, target: Path) -> dict[str, Any]:
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
    objects = Objects(files, settings.server.data_dir)
    try:
        for key in objects.stored_keys():
            kept = target / "objects" / key
            objects.fetch(key, kept)
            entries[f"objects/{key}"] = _sha256(kept)
    finally:
        objects.close()
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "database": {"kind": kind, "file": dump.name, "revisions": sorted(migrate.heads(url))},
        "storage": objects.where,
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
    files = settings.section("files")
    assert isinstance(files, FilesSettings)
    location = Location(source, files)
    if location.is_s3:
        with tempfile.TemporaryDirectory(prefix="devpynode-restore-") as staging:
            location.download(Path(staging))
            return _put_back(settings, files, Path(staging), force)
    if not (Path(source) / "manifest.json").exists():
        raise BackupError(f"no backup at {source} (manifest.json is missing)")
    return _put_back(settings, files, Path(source), force)


def _put_back(settings: Settings, files: FilesSettings, backup_dir: Path, force: bool) -> dict[str, Any]:
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
    objects = Objects(files, settings.server.data_dir)
    try:
        occupied = _has_accounts(url) or any(True for _ in objects.stored_keys())
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
            if name.startswith("objects/"):
                objects.store(name.removeprefix("objects/"), backup_dir / name)
    finally:
        objects.close()
    return dict(manifest)


def _has_accounts(url: str) -> bool:
    from sqlalchemy import create_engine, inspect, text

    sync_url = make_url(url)
    sync_url = sync_url.set(drivername="sqlite" if url.startswith("sqlite") else "postgresql+psycopg")
    if url.startswith("sqlite") and not Path(sync_url.database or "").exists():
        return False
    engine = create_engine(sync_url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("users"):
                return False
            return bool(connection.execute(text("SELECT count(*) FROM users")).scalar())
    except Exception as exc:
        raise SettingsError(f"DEVPYNODE_DATABASE_URL: cannot reach the database ({type(exc).__name__})") from None
    finally:
        engine.dispose()
