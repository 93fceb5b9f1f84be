"""The audit trail over the auth service's RecordAuditEvent (service identity): administrators' model changes
land in the one trail ListAuditEvents reads, filed as `ai.<kind>`."""

from __future__ import annotations

from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc

from pynode.core.peers import PeerClient

RECORD_BUDGET_SECONDS = 5.0


class GrpcAuditTrail(PeerClient):
    """Reports model changes to auth's audit trail."""

    service = "auth"

    async def record(self, kind: str, actor: str, address: str, details: dict[str, str]) -> None:
        stub = auth_pb2_grpc.AuthServiceStub(self.channel)
        options = await self.options(as_user=False, budget_seconds=RECORD_BUDGET_SECONDS)
        request = auth_pb2.RecordAuditEventRequest(
            kind=f"ai.{kind}", actor=actor, client_address=address, details=details
        )
        await self.unary(stub.RecordAuditEvent(request, **options))
