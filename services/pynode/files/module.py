"""The files service's entry point: its settings and the shared infrastructure in, the servicer out.

Storage by URL scheme: `file://` (or nothing: `files/` in the data dir) on local disk, `s3://BUCKET` on S3 or
MinIO with the endpoint and key settings. Uploads are scanned by clamd when one is configured. Blocking work runs
on the process's named pools (`infra.executors`: files-s3, files-disk, files-lane-N, files-thumbnails,
files-trim), closed by the app after every module; the sweeps run on the module's TaskSet, closed by its closer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from devpynode.files.v1 import files_pb2

from pynode.core.module import BackupLocation, BackupSource, Closer, Infrastructure, Registration, ServiceParts
from pynode.core.settings import SettingsError
from pynode.files.settings import FilesSettings

if TYPE_CHECKING:  # the adapters are imported by build(): the app and the CLI import this file to list services
    from pynode.core.executors import Executors
    from pynode.files.ports import BlobStore, Staging
    from pynode.files.service import FilesService
    from pynode.files.sessions import UploadSessions

_SERVICE = files_pb2.DESCRIPTOR.services_by_name["FileService"]


@dataclass
class FilesComponents:
    """The files service's wired parts, for its tools and tests."""

    service: FilesService
    sessions: UploadSessions


def storage_root(settings: FilesSettings, data_dir: Path) -> Path:
    """The local storage directory (`file://` URL, or `files/` in the data dir)."""
    if not settings.storage_url:
        return (data_dir / "files").resolve()
    return Path(urlparse(settings.storage_url).path).resolve()


async def open_storage(
    settings: FilesSettings, data_dir: Path, executors: Executors
) -> tuple[BlobStore, Staging, str, Closer | None]:
    """The store and the sessions' staging the storage URL names, a description, and what closes them (their
    threads are the process's `executors`, closed by the app)."""
    from pynode.files.adapters.local_store import LocalBlobStore, LocalStaging

    parsed = urlparse(settings.storage_url)
    if parsed.scheme != "s3":
        root = storage_root(settings, data_dir)
        store = LocalBlobStore(root, executors)
        await store.sweep()

        async def close_local() -> None:
            await store.disk.run(store.close)  # removes this process's temporary directory: off the loop

        return store, LocalStaging(root, store.disk), root.as_uri(), close_local
    bucket = parsed.netloc
    if not bucket or parsed.path.strip("/"):
        raise SettingsError("DEVPYNODE_STORAGE_URL: give the bucket alone, as s3://BUCKET")
    from pynode.files.adapters.s3_store import S3BlobStore, S3Objects, S3Staging  # minio: a second to import

    objects = S3Objects(
        bucket,
        settings.s3_endpoint_url,
        settings.s3_access_key.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
        settings.s3_region,
        settings.s3_public_endpoint_url,
        executors,
    )
    try:
        await objects.prepare()
    except BaseException:
        await objects.close()
        raise
    s3_store = S3BlobStore(objects)
    return s3_store, S3Staging(s3_store), f"s3://{bucket} at {settings.s3_endpoint_url}", objects.close


class FilesModule:
    """devpynode.files.v1.FileService."""

    name = "files"
    settings_class = FilesSettings
    service_names = (_SERVICE.full_name,)
    migrations: Path | None = Path(__file__).resolve().parent / "migrations"

    backup_folder = "objects"

    def backup_source(self, settings: FilesSettings, data_dir: Path) -> BackupSource:
        from pynode.files.backup import StoredObjects

        return StoredObjects(settings, data_dir)

    def backup_location(self, settings: FilesSettings, url: str) -> BackupLocation | None:
        from pynode.files.backup import BucketLocation

        return BucketLocation(url, settings) if url.startswith("s3://") else None

    def load_tables(self) -> None:
        from pynode.files.adapters import sql_files  # noqa: F401 - registers the tables

    async def build(self, settings: FilesSettings, infra: Infrastructure) -> ServiceParts:
        from devpynode.files.v1 import files_pb2_grpc

        from pynode.core.tasks import TaskSet
        from pynode.files.adapters.clamd_scanner import ClamdScanner
        from pynode.files.adapters.local_store import LocalBlobStore
        from pynode.files.adapters.sql_files import SqlFileRepository, SqlUploadSessions
        from pynode.files.metrics import FilesMetrics
        from pynode.files.service import FilesService, Limits
        from pynode.files.servicer import FileServicer, request_parsers
        from pynode.files.sessions import SWEEP_SECONDS, UploadSessions

        store, staging, described, close_storage = await open_storage(settings, infra.data_dir, infra.executors)
        limits = Limits(
            settings.files_max_bytes,
            settings.files_quota_bytes,
            settings.allowed_types(),
            settings.files_thumbnail_pixels,
            settings.files_max_image_pixels,
            settings.files_url_seconds,
            settings.files_max_image_bytes,
            settings.files_thumbnail_concurrency,
            settings.files_max_downloads_per_user,
            settings.files_max_downloads_per_address,
        )
        scanner = ClamdScanner(settings.clamd_address) if settings.clamd_address else None
        metrics = FilesMetrics()
        service = FilesService(store, SqlFileRepository(infra.db), limits, scanner, metrics, infra.executors)
        sessions = UploadSessions(service, SqlUploadSessions(infra.db), staging, settings.files_session_hours)
        background = TaskSet("files")
        background.every("upload-session-sweep", SWEEP_SECONDS, sessions.sweep, "expired holdings released")
        if isinstance(store, LocalBlobStore):  # a crashed process's temporary files, while this one runs
            background.every("partial-upload-sweep", SWEEP_SECONDS, store.sweep, "crashed uploads' files removed")

        async def stop_background() -> None:
            await background.close()  # a sweep in progress finishes its run
            service.close()

        servicer = FileServicer(service, sessions)
        return ServiceParts(
            [Registration(_SERVICE, files_pb2_grpc.add_FileServiceServicer_to_server, servicer, request_parsers())],
            closers=[c for c in (close_storage, stop_background) if c is not None],
            component=FilesComponents(service, sessions),
            collectors=metrics.collectors,
            backends={
                "storage": described,
                "scanning": f"clamd at {settings.clamd_address}" if scanner else "off (DEVPYNODE_CLAMD_ADDRESS unset)",
            },
        )


MODULE = FilesModule()
