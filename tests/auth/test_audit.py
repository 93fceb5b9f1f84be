"""The audit trail: every security event recorded once, readable by admins only, never holding a secret."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from devpynode.auth.v1 import auth_pb2
from sqlalchemy import text

from pynode.app.server import MeshServer
from pynode.auth.domain import AuditEvent
from pynode.core.db import utcnow
from tests.client import PASSWORD, MeshClient, fails, new_email, run_cli_here
from tests.conftest import auth_of, one_backend

NEW_PASSWORD = "a different long passphrase"


async def _admin(client: MeshClient, mesh: MeshServer) -> MeshClient:
    email = new_email()
    await auth_of(mesh).service.create_admin(email, PASSWORD, "Auditor")
    admin = client.as_other_address()
    await admin.login(email)
    return admin


async def _events(admin: MeshClient, user_id: str = "", kind: str = "") -> list[auth_pb2.AuditEvent]:
    events: list[auth_pb2.AuditEvent] = []
    token = ""
    while True:
        page = await admin.admin.ListAuditEvents(
            auth_pb2.ListAuditEventsRequest(page_size=3, page_token=token, user_id=user_id, kind=kind),
            metadata=admin.md(),
        )
        events.extend(page.events)
        token = page.next_page_token
        if not token:
            return events


async def _refresh(client: MeshClient, token: str) -> auth_pb2.TokenPair:
    response = await client.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=token), metadata=client.md(""))
    return response.tokens


async def test_an_accounts_life_is_in_the_audit_trail_newest_first(client: MeshClient, mesh: MeshServer) -> None:
    admin = await _admin(client, mesh)
    email = new_email()
    registered = await client.register(email)
    user_id = registered.user.id
    assert (await fails(client.login(email, "wrong password!"))).code == grpc.StatusCode.UNAUTHENTICATED
    signed_in = await client.login(email)
    first = signed_in.tokens.refresh_token
    await _refresh(client, first)
    await asyncio.sleep(auth_of(mesh).service.sessions.grace_seconds + 0.1)  # type: ignore[attr-defined]
    await fails(_refresh(client, first))  # reuse: the session ends
    other = client.as_other_address()
    await other.login(email)
    wrong = auth_pb2.ChangePasswordRequest(current_password="not the password", new_password=NEW_PASSWORD)
    await fails(other.auth.ChangePassword(wrong, metadata=other.md()))
    right = auth_pb2.ChangePasswordRequest(current_password=PASSWORD, new_password=NEW_PASSWORD)
    await other.auth.ChangePassword(right, metadata=other.md())
    third = client.as_other_address()
    third_login = await third.login(email, NEW_PASSWORD)
    sid = third_login.tokens.refresh_token.partition(".")[0]
    await other.auth.RevokeSession(auth_pb2.RevokeSessionRequest(session_id=sid), metadata=other.md())
    await other.auth.Logout(auth_pb2.LogoutRequest(), metadata=other.md())
    for change in (
        auth_pb2.UpdateUserRequest(user_id=user_id, role=auth_pb2.ROLE_ADMIN),
        auth_pb2.UpdateUserRequest(user_id=user_id, disabled=True),
        auth_pb2.UpdateUserRequest(user_id=user_id, disabled=False),
    ):
        await admin.admin.UpdateUser(change, metadata=admin.md())

    events = await _events(admin, user_id=user_id)
    kinds = [e.kind for e in reversed(events)]
    assert kinds == [
        "register",
        "login.failed",
        "login.succeeded",
        "refresh.reuse_detected",
        "login.succeeded",
        "password.change_failed",
        "password.changed",
        "login.succeeded",
        "session.revoked",
        "logout",
        "user.role_changed",
        "user.disabled",
        "user.enabled",
    ]
    assert [e.id for e in events] == sorted((e.id for e in events), reverse=True)
    by_kind = {e.kind: e for e in events}
    assert by_kind["login.failed"].details["reason"] == "WRONG_PASSWORD"
    assert by_kind["login.failed"].client_address == client.address
    assert by_kind["user.role_changed"].details == {"from_role": "user", "to_role": "admin"}
    assert by_kind["user.role_changed"].actor == (await admin.me()).id
    assert all(e.request_id for e in events)
    for secret in (PASSWORD, NEW_PASSWORD, first, first.partition(".")[2], signed_in.tokens.access_token):
        assert all(secret not in str(e) for e in events)
    only_failures = await _events(admin, user_id=user_id, kind="login.failed")
    assert [e.kind for e in only_failures] == ["login.failed"]


async def test_lockouts_and_service_tokens_are_recorded(client: MeshClient, mesh: MeshServer) -> None:
    admin = await _admin(client, mesh)
    email = new_email()
    await client.register(email)
    attacker = client.as_other_address()
    for _ in range(5):
        await fails(attacker.login(email, "wrong password!"))
    lockouts = await _events(admin, kind="login.lockout")
    assert any(e.client_address == attacker.address for e in lockouts)
    service = auth_pb2.IssueServiceTokenRequest(service_name="chat", service_secret="not the secret")
    await fails(client.auth.IssueServiceToken(service, metadata=client.md("")))
    refused = await _events(admin, kind="service_token.refused")
    assert refused and refused[0].details["service"] == "chat" and "not the secret" not in str(refused[0])


async def test_only_admins_read_the_trail_and_page_tokens_keep_their_filters(
    client: MeshClient, mesh: MeshServer
) -> None:
    await client.register()
    refused = await fails(client.admin.ListAuditEvents(auth_pb2.ListAuditEventsRequest(), metadata=client.md()))
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    admin = await _admin(client, mesh)
    page = await admin.admin.ListAuditEvents(auth_pb2.ListAuditEventsRequest(page_size=1), metadata=admin.md())
    assert page.next_page_token
    switched = await fails(
        admin.admin.ListAuditEvents(
            auth_pb2.ListAuditEventsRequest(page_size=1, page_token=page.next_page_token, kind="logout"),
            metadata=admin.md(),
        )
    )
    assert switched.violations() == {"page_token": "BAD_PAGE_TOKEN"}


async def test_retention_drops_old_events_and_rows_cannot_be_rewritten(mesh: MeshServer) -> None:
    trail = auth_of(mesh).audit
    old_at = utcnow() - timedelta(days=trail.retention_days + 1)
    marker = new_email()
    await trail.store.add(AuditEvent(0, old_at, "test.old", "", "", "", "", {"marker": marker}))
    await trail.store.add(AuditEvent(0, utcnow(), "test.new", "", "", "", "", {"marker": marker}))
    assert await trail.sweep() >= 1
    kept = await trail.store.page(None, 100, "", "test.new")
    assert any(e.details.get("marker") == marker for e in kept)
    assert not [e for e in await trail.store.page(None, 100, "", "test.old") if e.details.get("marker") == marker]
    db = mesh.platform.infra.db
    with pytest.raises(Exception, match="append-only"):
        async with db.session() as session, session.begin():
            await session.execute(text("UPDATE audit_events SET kind = 'rewritten'"))


@one_backend  # a command-line client is a gRPC client: see tests/conftest.py
async def test_users_audit_command_shows_the_trail(client: MeshClient, mesh: MeshServer, tmp_path: Path) -> None:
    email = new_email()
    await auth_of(mesh).service.create_admin(email, PASSWORD, "Auditor")
    env = {"DEVPYNODE_SERVER": f"127.0.0.1:{mesh.port}", "DEVPYNODE_CONFIG_DIR": str(tmp_path / "config")}
    code, _, err = await run_cli_here("login", "--email", email, "--password-stdin", env=env, stdin=PASSWORD.encode())
    assert code == 0, err
    code, out, err = await run_cli_here("users", "audit", "--user", email, "--limit", "5", env=env)
    assert code == 0, err
    assert "login.succeeded" in out and "admin.created" in out
