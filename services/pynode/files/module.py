"""The files service's entry point: its settings and the shared infrastructure in, the servicer out.

Built so far: streamed and resumable uploads, downloads (ranges), GetFile, ListFiles, DeleteFile on local
storage, scanned by clamd when one is configured. S3 is not yet: an `s3://` storage URL stops the server with
one line rather than being ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from devpynode.files.v1 import files_pb2, files_pb2_grpc

from pynode.core import tasks
from pynode.core.module import Infrastructure, Registration, ServiceParts
from pynode.core.settings import SettingsError
from pynode.files.adapters.local_store import LocalBlobStore, LocalStaging
from pynode.files.adapters.sql_files import SqlFileRepository, SqlUploadSessions
from pynode.files.scanner import ClamdScanner
from pynode.files.service import FilesService, Limits
from pynode.files.servicer import FileServicer
from pynode.files.sessions import SWEEP_SECONDS, UploadSessions
from pynode.files.settings import FilesSettings

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
    parsed = urlparse(settings.storage_url)
    if parsed.scheme != "file":
        raise SettingsError(
            "DEVPYNODE_STORAGE_URL: s3:// storage is not built yet (the files issue's S3 part); use file:///path"
        )
    return Path(parsed.path).resolve()


class FilesModule:
    """devpynode.files.v1.FileService."""

    name = "files"
    settings_class = FilesSettings
    service_names = (_SERVICE.full_name,)
    migrations: Path | None = Path(__file__).resolve().parent / "migrations"

    def load_tables(self) -> None:
        from pynode.files.adapters import sql_files  # noqa: F401 - registers the tables

    async def build(self, settings: FilesSettings, infra: Infrastructure) -> ServiceParts:
        root = storage_root(settings, infra.data_dir)
        store = LocalBlobStore(root)
        store.sweep_partials()
        limits = Limits(
            settings.files_max_bytes,
            settings.files_quota_bytes,
            settings.allowed_types(),
            settings.files_thumbnail_pixels,
            settings.files_max_image_pixels,
        )
        scanner = ClamdScanner(settings.clamd_address) if settings.clamd_address else None
        service = FilesService(store, SqlFileRepository(infra.db), limits, scanner)
        sessions = UploadSessions(
            service, SqlUploadSessions(infra.db), LocalStaging(root), settings.files_session_hours
        )
        sweeper = tasks.Periodic("upload-session-sweep", SWEEP_SECONDS, sessions.sweep, "expired sessions discarded")

        async def stop_sweeper() -> None:
            await sweeper.stop()

        servicer = FileServicer(service, sessions)
        return ServiceParts(
            [Registration(_SERVICE, files_pb2_grpc.add_FileServiceServicer_to_server, servicer)],
            closers=[stop_sweeper],
            component=FilesComponents(service, sessions),
            backends={
                "storage": root.as_uri() + " (S3 storage not built yet)",
                "scanning": f"clamd at {settings.clamd_address}" if scanner else "off (DEVPYNODE_CLAMD_ADDRESS unset)",
            },
        )


MODULE = FilesModule()
