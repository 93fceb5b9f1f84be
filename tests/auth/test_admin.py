"""Roles: admin-only RPCs, disabling, promotion, and the create-admin command."""

from __future__ import annotations

from pathlib import Path

import grpc
from devpynode.auth.v1 import auth_pb2

from pynode.app.server import MeshServer
from tests.client import PASSWORD, MeshClient, fails, new_email, run_cli_here
from tests.conftest import auth_of


async def _admin(client: MeshClient, mesh: MeshServer) -> MeshClient:
    email = new_email()
    await auth_of(mesh).service.create_admin(email, PASSWORD, "Admin")
    admin = client.as_other_address()
    login = await admin.login(email)
    assert login.user.role == auth_pb2.ROLE_ADMIN
    return admin


async def test_users_cannot_call_admin_rpcs(client: MeshClient) -> None:
    await client.register()
    error = await fails(client.admin.ListUsers(auth_pb2.ListUsersRequest(), metadata=client.md()))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED and error.reason == "ROLE_REQUIRED"
    anonymous = await fails(client.admin.ListUsers(auth_pb2.ListUsersRequest(), metadata=client.md("")))
    assert anonymous.code == grpc.StatusCode.UNAUTHENTICATED


async def test_admin_lists_every_user_in_pages(client: MeshClient, mesh: MeshServer) -> None:
    admin = await _admin(client, mesh)
    created = {(await client.as_other_address().register()).user.id for _ in range(3)}
    seen: list[str] = []
    token = ""
    while True:
        page = await admin.admin.ListUsers(
            auth_pb2.ListUsersRequest(page_size=2, page_token=token), metadata=admin.md()
        )
        assert len(page.users) <= 2
        seen.extend(u.id for u in page.users)
        token = page.next_page_token
        if not token:
            break
    assert created <= set(seen) and len(seen) == len(set(seen))


async def test_disabling_a_user_ends_their_sessions_and_sign_in(client: MeshClient, mesh: MeshServer) -> None:
    admin = await _admin(client, mesh)
    email = new_email()
    victim = (await client.register(email)).user
    updated = await admin.admin.UpdateUser(
        auth_pb2.UpdateUserRequest(user_id=victim.id, disabled=True), metadata=admin.md()
    )
    assert updated.user.disabled
    assert (await fails(client.me())).reason == "SESSION_REVOKED"
    refused = await fails(client.as_other_address().login(email))
    assert refused.code == grpc.StatusCode.UNAUTHENTICATED and refused.reason == "BAD_CREDENTIALS"
    await admin.admin.UpdateUser(auth_pb2.UpdateUserRequest(user_id=victim.id, disabled=False), metadata=admin.md())
    await client.as_other_address().login(email)


async def test_promotion_applies_to_live_sessions(client: MeshClient, mesh: MeshServer) -> None:
    admin = await _admin(client, mesh)
    user = (await client.register()).user
    await fails(client.admin.ListUsers(auth_pb2.ListUsersRequest(), metadata=client.md()))
    await admin.admin.UpdateUser(
        auth_pb2.UpdateUserRequest(user_id=user.id, role=auth_pb2.ROLE_ADMIN), metadata=admin.md()
    )
    await client.admin.ListUsers(auth_pb2.ListUsersRequest(), metadata=client.md())  # same token, new role
    await admin.admin.UpdateUser(
        auth_pb2.UpdateUserRequest(user_id=user.id, role=auth_pb2.ROLE_USER), metadata=admin.md()
    )
    assert (await fails(client.admin.ListUsers(auth_pb2.ListUsersRequest(), metadata=client.md()))).reason == (
        "ROLE_REQUIRED"
    )


async def test_update_user_errors(client: MeshClient, mesh: MeshServer) -> None:
    admin = await _admin(client, mesh)
    me = await admin.me()
    missing = await fails(
        admin.admin.UpdateUser(
            auth_pb2.UpdateUserRequest(user_id="4c1f6c38-7f0c-4d9b-9d49-000000000000", disabled=True),
            metadata=admin.md(),
        )
    )
    assert missing.code == grpc.StatusCode.NOT_FOUND
    bad = await fails(admin.admin.UpdateUser(auth_pb2.UpdateUserRequest(user_id="nope"), metadata=admin.md()))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.violations() == {"user_id": "BAD_FORMAT"}
    unspecified = await fails(
        admin.admin.UpdateUser(
            auth_pb2.UpdateUserRequest(user_id=me.id, role=auth_pb2.ROLE_UNSPECIFIED), metadata=admin.md()
        )
    )
    assert unspecified.code == grpc.StatusCode.INVALID_ARGUMENT
    itself = await fails(
        admin.admin.UpdateUser(auth_pb2.UpdateUserRequest(user_id=me.id, disabled=True), metadata=admin.md())
    )
    assert itself.code == grpc.StatusCode.FAILED_PRECONDITION


async def test_create_admin_command(tmp_path: Path) -> None:
    code, out, err = await run_cli_here(
        "users", "create-admin", "--email", "Root@Example.com", "--password-stdin", "--data-dir", str(tmp_path),
        stdin=f"{PASSWORD}\n".encode(),
    )  # fmt: skip
    assert code == 0, err
    assert "created admin root@example.com" in out


async def test_forged_user_page_tokens_are_invalid(client: MeshClient, mesh: MeshServer) -> None:
    from pynode.core.paging import encode_token

    admin = await _admin(client, mesh)
    for forged in (encode_token({"t": "yesterday", "i": "x"}), encode_token({"t": 5}), "not-base64!"):
        error = await fails(admin.admin.ListUsers(auth_pb2.ListUsersRequest(page_token=forged), metadata=admin.md()))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.violations() == {"page_token": "BAD_PAGE_TOKEN"}
