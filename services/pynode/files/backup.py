"""The files module's backup hook: its stored objects, and `s3://BUCKET/PREFIX` as a home for backups.

Blocking code, run by `devpynode backup` and `restore` outside any event loop. Only objects under
`users/` are backed up (uploads and thumbnails); upload sessions' parts are not.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pynode.core.module import BackupError
from pynode.files.adapters.s3_store import S3Objects
from pynode.files.settings import FilesSettings


def _s3(bucket: str, files: FilesSettings) -> S3Objects:
    return S3Objects(
        bucket,
        files.s3_endpoint_url,
        files.s3_access_key.get_secret_value(),
        files.s3_secret_key.get_secret_value(),
        files.s3_region,
    )


class StoredObjects:
    """The files service's storage, local or S3, as backups see it: keys in, bytes out."""

    def __init__(self, files: FilesSettings, data_dir: Path) -> None:
        parsed = urlparse(files.storage_url)
        self.s3: S3Objects | None = None
        self.root: Path | None = None
        if parsed.scheme == "s3":
            self.s3 = _s3(parsed.netloc, files)
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


@dataclass
class BucketLocation:
    """A backup's home under `s3://BUCKET/PREFIX`, reached with the files service's S3 endpoint and keys."""

    url: str
    files: FilesSettings

    def _bucket(self) -> tuple[S3Objects, str]:
        parsed = urlparse(self.url)
        return _s3(parsed.netloc, self.files), parsed.path.strip("/")

    def upload(self, staged: Path) -> None:
        objects, prefix = self._bucket()
        try:
            client = objects.client
            if not client.bucket_exists(objects.bucket):
                client.make_bucket(objects.bucket)
            if any(True for _ in client.list_objects(objects.bucket, prefix=f"{prefix}/", recursive=True)):
                raise BackupError(f"{self.url} already holds a backup; choose a new prefix")
            for path in sorted(staged.rglob("*")):
                if path.is_file():
                    client.fput_object(objects.bucket, f"{prefix}/{path.relative_to(staged)}", str(path))
        finally:
            objects.shutdown()

    def download(self, staged: Path) -> None:
        objects, prefix = self._bucket()
        try:
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
        finally:
            objects.shutdown()
