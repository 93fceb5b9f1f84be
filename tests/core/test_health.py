"""grpc.health.v1 as reflection lists it: Check, Watch and List all answer (issue 27 #23)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pynode.app.server import MeshServer


async def test_health_list_answers_every_service(mesh: MeshServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
        listed = await health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=10)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert {name: s.status for name, s in listed.statuses.items()} == {
        name: serving for name in [*mesh.service_names, ""]
    }
