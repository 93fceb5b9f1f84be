"""The files service's entry point. Contract only for now: every RPC answers UNIMPLEMENTED, after the edge's checks."""

from __future__ import annotations

from pathlib import Path

from devpynode.files.v1 import files_pb2, files_pb2_grpc

from pynode.core.module import Infrastructure, Registration, ServiceParts, unbuilt
from pynode.files.settings import FilesSettings

_SERVICE = files_pb2.DESCRIPTOR.services_by_name["FileService"]


class FilesModule:
    """devpynode.files.v1.FileService."""

    name = "files"
    settings_class = FilesSettings
    service_names = (_SERVICE.full_name,)
    migrations: Path | None = None

    def load_tables(self) -> None:
        """No tables yet."""

    async def build(self, settings: FilesSettings, infra: Infrastructure) -> ServiceParts:
        # The generated base servicer answers UNIMPLEMENTED until the service's issue lands.
        servicer = unbuilt(files_pb2_grpc.FileServiceServicer)
        return ServiceParts(
            [Registration(_SERVICE, files_pb2_grpc.add_FileServiceServicer_to_server, servicer)],
            backends={
                "storage": (settings.storage_url or (infra.data_dir / "files").resolve().as_uri())
                + " (the files service is contract only)"
            },
        )


MODULE = FilesModule()
