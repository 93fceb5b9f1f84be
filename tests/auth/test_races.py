"""A login in flight against demotion, disabling and a password change; admins demoting each other at once.

Each race pauses a real login inside password hashing (where it spends ~250 ms in production), makes the
change through the public API, then lets the login finish: the outcome must be as if the change came
strictly before the login (it fails) or after it (its session carries the change).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from devpynode.auth.v1 import auth_pb2

from pynode.app.server import MeshServer
from tests.backends import Backend
from tests.client import PASSWORD, MeshClient, fails, new_email
from tests.conftest import auth_of

NEW_PASSWORD = "a different long passphrase"


async def _admin(client: MeshClient, mesh: MeshServer) -> tuple[MeshClient, str]:
    email = new_email()
    await auth_of(mesh).service.create_admin(email, PASSWORD, "Admin")
    admin = client.as_other_address()
    await admin.login(email)
    return admin, email


async def _during_login_hashing(
    mesh: MeshServer, monkeypatch: pytest.MonkeyPatch, login: Awaitable[Any], change: Callable[[], Awaitable[Any]]
) -> Any:
    """Run `login` and, while it is inside password hashing, `change`; returns the login's result or error."""
    hasher = auth_of(mesh).hasher
    real = hasher.verify
    entered, release = asyncio.Event(), asyncio.Event()
    armed = True

    async def verify(password: str, hashed: str | None) -> bool:
        nonlocal armed
        ok = await real(password, hashed)
        if armed:
            armed = False
            entered.set()
            await release.wait()
        return ok

    monkeypatch.setattr(hasher, "verify", verify)
    task = asyncio.ensure_future(login)
    await asyncio.wait_for(entered.wait(), 10)
    await change()
    release.set()
    (result,) = await asyncio.gather(task, return_exceptions=True)
    return result


async def _assert_session_ended(client: MeshClient, tokens: auth_pb2.TokenPair) -> None:
    """The session itself is gone (not merely hidden by a profile check): no refresh, no session list."""
    request = auth_pb2.RefreshTokenRequest(refresh_token=tokens.refresh_token)
    assert (await fails(client.auth.RefreshToken(request, metadata=client.md("")))).reason == "SESSION_ENDED"
    listing = client.auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=client.md(tokens.access_token))
    assert (await fails(listing)).code == grpc.StatusCode.UNAUTHENTICATED


async def test_demotion_during_login_hashing_reaches_the_new_session(
    client: MeshClient, mesh: MeshServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    boss, _ = await _admin(client, mesh)
    target, email = await _admin(client, mesh)
    me = await target.me()
    late = client.as_other_address()

    async def demote() -> None:
        await boss.admin.UpdateUser(
            auth_pb2.UpdateUserRequest(user_id=me.id, role=auth_pb2.ROLE_USER), metadata=boss.md()
        )

    result = await _during_login_hashing(mesh, monkeypatch, late.login(email), demote)
    if isinstance(result, grpc.aio.AioRpcError):
        assert result.code() == grpc.StatusCode.UNAUTHENTICATED
        return
    assert result.user.role == auth_pb2.ROLE_USER
    refused = await fails(late.admin.ListUsers(auth_pb2.ListUsersRequest(), metadata=late.md()))
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    # and it cannot promote itself back
    again = await fails(
        late.admin.UpdateUser(auth_pb2.UpdateUserRequest(user_id=me.id, role=auth_pb2.ROLE_ADMIN), metadata=late.md())
    )
    assert again.code == grpc.StatusCode.PERMISSION_DENIED


async def test_disabling_during_login_hashing_leaves_no_live_session(
    client: MeshClient, mesh: MeshServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    boss, _ = await _admin(client, mesh)
    email = new_email()
    victim = await client.as_other_address().register(email)
    late = client.as_other_address()

    async def disable() -> None:
        await boss.admin.UpdateUser(
            auth_pb2.UpdateUserRequest(user_id=victim.user.id, disabled=True), metadata=boss.md()
        )

    result = await _during_login_hashing(mesh, monkeypatch, late.login(email), disable)
    if not isinstance(result, grpc.aio.AioRpcError):
        await _assert_session_ended(late, result.tokens)
        return
    assert result.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_password_change_during_login_hashing_leaves_no_live_session(
    client: MeshClient, mesh: MeshServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = new_email()
    owner = client.as_other_address()
    await owner.register(email)
    thief = client.as_other_address()

    async def change_password() -> None:
        await owner.auth.ChangePassword(
            auth_pb2.ChangePasswordRequest(current_password=PASSWORD, new_password=NEW_PASSWORD), metadata=owner.md()
        )

    result = await _during_login_hashing(mesh, monkeypatch, thief.login(email), change_password)
    if not isinstance(result, grpc.aio.AioRpcError):
        await _assert_session_ended(thief, result.tokens)
        return
    assert result.code() == grpc.StatusCode.UNAUTHENTICATED
    await owner.me()  # the owner's own session survives its password change
    await client.as_other_address().login(email, NEW_PASSWORD)


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(own_backend: Backend, strict: Any) -> None:
    client: MeshClient = await strict(database_url=own_backend.database_url)
    mesh: MeshServer = strict.servers[-1]
    first, _ = await _admin(client, mesh)
    second, _ = await _admin(client, mesh)
    ids = [(await first.me()).id, (await second.me()).id]

    def demote(by: MeshClient, whom: str) -> Any:
        return by.admin.UpdateUser(auth_pb2.UpdateUserRequest(user_id=whom, role=auth_pb2.ROLE_USER), metadata=by.md())

    results = await asyncio.gather(demote(first, ids[1]), demote(second, ids[0]), return_exceptions=True)
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(refused) == 1, results
    assert refused[0].code() == grpc.StatusCode.FAILED_PRECONDITION
    survivor = first if not isinstance(results[0], grpc.aio.AioRpcError) else second
    assert (await survivor.me()).role == auth_pb2.ROLE_ADMIN
    # The last admin cannot be disabled either (nor disable or demote itself).
    demoted = second if survivor is first else first
    await survivor.admin.UpdateUser(
        auth_pb2.UpdateUserRequest(user_id=(await demoted.me()).id, disabled=True), metadata=survivor.md()
    )
    alone = await fails(
        survivor.admin.UpdateUser(
            auth_pb2.UpdateUserRequest(user_id=(await survivor.me()).id, disabled=True), metadata=survivor.md()
        )
    )
    assert alone.code == grpc.StatusCode.FAILED_PRECONDITION
