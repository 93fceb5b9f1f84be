"""The HTTP door's entry point: an HTTP listener (no gRPC service of its own) that calls the AI router as a
peer, in this process or at DEVPYNODE_AI_ADDRESS (the OpenAI-compatible API), and the files service
(DEVPYNODE_FILES_ADDRESS) for a file's bytes over plain HTTP (`/download/v1/files/{id}`, `/upload/v1/files`).

It implements the optional `ServesHttp` hook: the gateway routes `http_paths` on its HTTP port to the listener
(`ServiceParts.http_port` here, DEVPYNODE_DOOR_ADDRESS when the door runs in another process).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pynode.core.module import Infrastructure, ServiceParts
from pynode.door.settings import DoorSettings

# Exact paths, and prefixes ending in `/`, that the gateway sends here.
HTTP_PATHS = (
    "/v1/models",
    "/v1/models/",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/download/v1/files/",  # a file's bytes over plain HTTP (file_bytes.py)
    "/upload/v1/files",
)
# Of those, the ones whose request bodies Envoy passes on as they come rather than buffering them whole: an
# upload's bytes (up to the files service's size limit, far over the gateway's buffer).
HTTP_STREAMED_PATHS = ("/upload/v1/files",)
HEALTH_PATH = "/healthz"


@dataclass
class DoorComponents:
    """The door's wired parts, for tests and the startup summary."""

    port: int


class DoorModule:
    """The OpenAI-compatible HTTP door in front of devpynode.ai.v1.AIRouterService."""

    name = "door"
    settings_class = DoorSettings
    service_names: tuple[str, ...] = ()  # HTTP only: nothing mounted on the gRPC server
    migrations: Path | None = None
    http_paths = HTTP_PATHS
    http_streamed_paths = HTTP_STREAMED_PATHS
    health_path = HEALTH_PATH

    def load_tables(self) -> None:
        """No tables: the router keeps the ledger."""

    async def build(self, settings: DoorSettings, infra: Infrastructure) -> ServiceParts:
        if settings.door_port < 0:
            return ServiceParts([], backends={"door": "off (DEVPYNODE_DOOR_PORT=-1)"})
        from pynode.core.settings import SettingsError
        from pynode.door.adapters.grpc_files import GrpcFiles
        from pynode.door.adapters.grpc_router import GrpcRouter
        from pynode.door.adapters.local_router import LocalRouter
        from pynode.door.http_edge import DoorEdge, DoorServer
        from pynode.door.ports import Router

        infra.peers.require("ai")
        infra.peers.require("files")
        remote = GrpcRouter(infra.peers)
        in_process = settings.door_in_process and infra.peers.is_local("ai")
        router: Router = LocalRouter(infra.peers, remote) if in_process else remote
        edge = DoorEdge(router, settings.door_max_body_bytes, settings.door_body_seconds, GrpcFiles(infra.peers))
        server = DoorServer(edge, settings.door_host, settings.door_port, settings.door_headers_seconds)
        try:
            port = await server.start()
        except OSError as exc:
            await server.stop()
            raise SettingsError(
                f"DEVPYNODE_DOOR_PORT: cannot listen on {settings.door_host}:{settings.door_port} "
                f"({exc.strerror or exc}); choose another port, 0 for a free one, or -1 to turn the door off"
            ) from None
        return ServiceParts(
            [],
            closers=[server.stop],
            component=DoorComponents(port),
            backends={
                "door": f"http://{settings.door_host}:{port}/v1 (OpenAI-compatible, to the AI router "
                f"{'in this process' if in_process else 'over gRPC'})"
            },
            http_port=port,
        )


MODULE = DoorModule()
