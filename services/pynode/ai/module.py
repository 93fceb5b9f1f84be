"""The AI router's entry point. Contract only for now: every RPC answers UNIMPLEMENTED, after the edge's checks."""

from __future__ import annotations

from pathlib import Path

from devpynode.ai.v1 import ai_pb2, ai_pb2_grpc

from pynode.ai.settings import AISettings
from pynode.core.module import Infrastructure, Registration, ServiceParts, unbuilt

_SERVICE = ai_pb2.DESCRIPTOR.services_by_name["AIRouterService"]


class AIModule:
    """devpynode.ai.v1.AIRouterService."""

    name = "ai"
    settings_class = AISettings
    service_names = (_SERVICE.full_name,)
    migrations: Path | None = None

    def load_tables(self) -> None:
        """No tables yet."""

    async def build(self, settings: AISettings, infra: Infrastructure) -> ServiceParts:
        # The generated base servicer answers UNIMPLEMENTED until the service's issue lands.
        servicer = unbuilt(ai_pb2_grpc.AIRouterServiceServicer)
        return ServiceParts(
            [Registration(_SERVICE, ai_pb2_grpc.add_AIRouterServiceServicer_to_server, servicer)],
            backends={"providers": "none yet (the AI router is contract only)"},
        )


MODULE = AIModule()
