"""RecordAuditEvent: services report events into the one audit trail, under their own name only."""

from __future__ import annotations

import grpc
from devpynode.auth.v1 import auth_pb2

from pynode.app.server import MeshServer
from tests.client import PASSWORD, MeshClient, fails, new_email
from tests.conftest import auth_of


async def test_a_service_reports_an_event_and_only_a_service_may(client: MeshClient, mesh: MeshServer) -> None:
    email = new_email()
    await auth_of(mesh).service.create_admin(email, PASSWORD, "Auditor")
    admin = client.as_other_address()
    actor = (await admin.login(email)).user.id
    secret = mesh.platform.settings.mesh.service_secret.get_secret_value()
    service = (
        await client.auth.IssueServiceToken(auth_pb2.IssueServiceTokenRequest(service_name="ai", service_secret=secret))
    ).access_token
    request = auth_pb2.RecordAuditEventRequest(
        kind="ai.model.deleted", actor=actor, client_address="203.0.113.9", details={"model": "ollama/llama3.2"}
    )
    await client.auth.RecordAuditEvent(request, metadata=client.md(service))
    page = await admin.admin.ListAuditEvents(
        auth_pb2.ListAuditEventsRequest(kind="ai.model.deleted"), metadata=admin.md()
    )
    event = page.events[0]
    assert (event.actor, event.client_address, dict(event.details)) == (
        actor,
        "203.0.113.9",
        {"model": "ollama/llama3.2"},
    )
    # People cannot write the trail, not even admins; a service cannot pass as another kind of event.
    for token in (admin.token, ""):
        refused = await fails(client.auth.RecordAuditEvent(request, metadata=client.md(token)))
        assert refused.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
    for bad in (
        auth_pb2.RecordAuditEventRequest(kind="ai.Model Pulled", actor=actor),
        auth_pb2.RecordAuditEventRequest(kind="model.pulled", actor=actor),  # no service name
        auth_pb2.RecordAuditEventRequest(kind="chat.message.deleted", actor=actor),  # another service's
        auth_pb2.RecordAuditEventRequest(kind="auth.login.succeeded", actor=actor),
        auth_pb2.RecordAuditEventRequest(kind="ai.model.pulled", details={"Bad Key": "x"}),
        auth_pb2.RecordAuditEventRequest(kind="ai.model.pulled", details={"reason": "x" * 201}),
        auth_pb2.RecordAuditEventRequest(kind="ai.model.pulled", details={f"k{i}": "v" for i in range(9)}),
    ):
        error = await fails(client.auth.RecordAuditEvent(bad, metadata=client.md(service)))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, bad
