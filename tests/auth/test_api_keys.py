"""Personal API keys: create, list, revoke, the stored hash, use at every service, scopes, audit and the ledger."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from pathlib import Path

import grpc
import pytest
from devpynode.ai.v1 import ai_pb2, ai_pb2_grpc
from devpynode.auth.v1 import api_keys_pb2, api_keys_pb2_grpc, auth_pb2
from devpynode.files.v1 import files_pb2, files_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from pynode.app.server import MeshServer
from pynode.auth.adapters.sql_api_keys import ApiKeyRow
from tests.backends import Backend
from tests.client import PASSWORD, MeshClient, eventually, fails, new_email
from tests.conftest import auth_of, make_settings, start_mesh

_SCOPES = api_keys_pb2


def keys_of(client: MeshClient) -> api_keys_pb2_grpc.ApiKeyServiceStub:
    return api_keys_pb2_grpc.ApiKeyServiceStub(client.channel)


async def create_key(
    client: MeshClient, name: str = "laptop", scope: int = 0, expire: Timestamp | None = None
) -> api_keys_pb2.CreateApiKeyResponse:
    request = api_keys_pb2.CreateApiKeyRequest(name=name, scope=scope)  # type: ignore[arg-type]
    if expire is not None:
        request.expire_time.CopyFrom(expire)
    response: api_keys_pb2.CreateApiKeyResponse = await keys_of(client).CreateApiKey(request, metadata=client.md())
    return response


async def _admin(client: MeshClient, mesh: MeshServer) -> MeshClient:
    email = new_email()
    await auth_of(mesh).service.create_admin(email, PASSWORD, "Admin")
    admin = client.as_other_address()
    await admin.login(email)
    return admin


async def _events(mesh: MeshServer, user_id: str, kind: str) -> list[dict[str, str]]:
    events = await auth_of(mesh).audit.store.page(None, 100, user_id, kind)
    return [dict(e.details) for e in events]


async def test_create_list_revoke_and_the_secret_is_shown_once(client: MeshClient, mesh: MeshServer) -> None:
    me = await client.register()
    created = await create_key(client, "laptop", _SCOPES.API_KEY_SCOPE_AI)
    secret, key = created.secret, created.api_key
    assert secret.startswith(f"dpn_{uuid.UUID(key.id).hex}_") and len(secret) == 4 + 32 + 1 + 43
    assert key.name == "laptop" and key.user_id == me.user.id and key.scope == _SCOPES.API_KEY_SCOPE_AI
    assert key.prefix == f"dpn_{uuid.UUID(key.id).hex[:8]}" and not key.HasField("revoke_time")
    listed = await keys_of(client).ListApiKeys(api_keys_pb2.ListApiKeysRequest(), metadata=client.md())
    assert [k.id for k in listed.api_keys] == [key.id]
    assert secret not in str(listed)  # shown once: never again
    # Only SHA-256 of the secret is stored.
    async with mesh.platform.infra.db.session() as session:
        row = (await session.scalars(select(ApiKeyRow).where(ApiKeyRow.id == uuid.UUID(key.id)))).one()
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest() and secret not in repr(row.__dict__)
    revoked = await keys_of(client).RevokeApiKey(
        api_keys_pb2.RevokeApiKeyRequest(api_key_id=key.id), metadata=client.md()
    )
    assert revoked.api_key.HasField("revoke_time")
    active = await keys_of(client).ListApiKeys(api_keys_pb2.ListApiKeysRequest(active_only=True), metadata=client.md())
    assert list(active.api_keys) == []
    refused = await fails(client.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=client.md(secret)))
    assert refused.code == grpc.StatusCode.UNAUTHENTICATED and refused.reason == "API_KEY_REVOKED"
    assert {e["reason"] for e in await _events(mesh, me.user.id, "api_key.refused")} == {"API_KEY_REVOKED"}
    assert await _events(mesh, me.user.id, "api_key.created") and await _events(mesh, me.user.id, "api_key.revoked")
    for details in await _events(mesh, me.user.id, ""):
        assert secret not in str(details)


async def test_a_key_works_at_every_service(client: MeshClient, mesh: MeshServer) -> None:
    me = await client.register()
    secret = (await create_key(client)).secret
    assert (await client.me(secret)).id == me.user.id
    files = files_pb2_grpc.FileServiceStub(client.channel)
    assert list((await files.ListFiles(files_pb2.ListFilesRequest(), metadata=client.md(secret))).files) == []
    ai = ai_pb2_grpc.AIRouterServiceStub(client.channel)
    request = _echo("hi k")
    text = "".join([r.text async for r in ai.Generate(request, metadata=client.md(secret))])
    assert text.strip() == "hi k"


async def test_usage_breaks_down_by_key(client: MeshClient, mesh: MeshServer) -> None:
    await client.register()
    created = await create_key(client, "script", _SCOPES.API_KEY_SCOPE_AI)
    ai = ai_pb2_grpc.AIRouterServiceStub(client.channel)
    request = _echo("a b c")
    for bearer in (created.secret, created.secret, client.token):
        [r async for r in ai.Generate(request, metadata=client.md(bearer))]
    await mesh.platform.component("ai").service.drain()  # type: ignore[attr-defined]
    usage = await ai.GetUsage(ai_pb2.GetUsageRequest(by_api_key=True), metadata=client.md())
    by_key = {u.api_key_id: u.requests for u in usage.api_keys}
    assert by_key == {created.api_key.id: 2, "": 1}
    plain = await ai.GetUsage(ai_pb2.GetUsageRequest(), metadata=client.md())
    assert list(plain.api_keys) == [] and sum(m.requests for m in plain.models) == 3


async def test_scopes_cap_what_a_key_may_call(client: MeshClient, mesh: MeshServer) -> None:
    me = await client.register()
    ai_key = (await create_key(client, "ai", _SCOPES.API_KEY_SCOPE_AI)).secret
    read_key = (await create_key(client, "read", _SCOPES.API_KEY_SCOPE_READ_ONLY)).secret
    full_key = (await create_key(client, "full", _SCOPES.API_KEY_SCOPE_FULL)).secret
    files = files_pb2_grpc.FileServiceStub(client.channel)
    ai = ai_pb2_grpc.AIRouterServiceStub(client.channel)
    # AI scope: the router and GetCurrentUser only.
    assert (await client.me(ai_key)).id == me.user.id
    await ai.ListModels(ai_pb2.ListModelsRequest(), metadata=client.md(ai_key))
    denied = await fails(files.ListFiles(files_pb2.ListFilesRequest(), metadata=client.md(ai_key)))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED and denied.reason == "API_KEY_SCOPE"
    # Read-only: reading RPCs only.
    await files.ListFiles(files_pb2.ListFilesRequest(), metadata=client.md(read_key))
    request = _echo("x")
    generate = await fails(_drain(ai.Generate(request, metadata=client.md(read_key))))
    assert generate.code == grpc.StatusCode.PERMISSION_DENIED and generate.reason == "API_KEY_SCOPE"
    # No key, whatever its scope, mints keys or touches the account's credentials.
    for secret in (ai_key, read_key, full_key):
        mint = await fails(
            keys_of(client).CreateApiKey(api_keys_pb2.CreateApiKeyRequest(name="more"), metadata=client.md(secret))
        )
        assert mint.code == grpc.StatusCode.PERMISSION_DENIED and mint.reason == "API_KEY_SCOPE"
        password = await fails(
            client.auth.ChangePassword(
                auth_pb2.ChangePasswordRequest(current_password=PASSWORD, new_password="another long passphrase"),
                metadata=client.md(secret),
            )
        )
        assert password.code == grpc.StatusCode.PERMISSION_DENIED
    # A full key lists and revokes keys (reading and giving up, never creating).
    listed = await keys_of(client).ListApiKeys(api_keys_pb2.ListApiKeysRequest(), metadata=client.md(full_key))
    assert len(listed.api_keys) == 3
    reasons = [e["reason"] for e in await _events(mesh, me.user.id, "api_key.refused")]
    assert reasons.count("API_KEY_SCOPE") == 8


def _echo(text: str) -> ai_pb2.GenerateRequest:
    return ai_pb2.GenerateRequest(
        model="builtin/echo", messages=[ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content=text)]
    )


async def _drain(stream: object) -> None:
    async for _ in stream:  # type: ignore[attr-defined]
        pass


async def test_an_admins_key_is_capped_by_its_scope(client: MeshClient, mesh: MeshServer) -> None:
    admin = await _admin(client, mesh)
    ai_key = (await create_key(admin, "ai", _SCOPES.API_KEY_SCOPE_AI)).secret
    full_key = (await create_key(admin, "full")).secret
    await admin.admin.ListUsers(auth_pb2.ListUsersRequest(), metadata=admin.md(full_key))
    capped = await fails(admin.admin.ListUsers(auth_pb2.ListUsersRequest(), metadata=admin.md(ai_key)))
    assert capped.code == grpc.StatusCode.PERMISSION_DENIED
    ai = ai_pb2_grpc.AIRouterServiceStub(admin.channel)
    everyone = await fails(ai.GetUsage(ai_pb2.GetUsageRequest(all_users=True), metadata=admin.md(ai_key)))
    assert everyone.code == grpc.StatusCode.PERMISSION_DENIED and everyone.reason == "ROLE_REQUIRED"


async def test_get_current_user_shows_the_role_a_capped_key_acts_with(client: MeshClient, mesh: MeshServer) -> None:
    admin = await _admin(client, mesh)
    keys = {
        scope: (await create_key(admin, str(scope), scope)).secret
        for scope in (_SCOPES.API_KEY_SCOPE_AI, _SCOPES.API_KEY_SCOPE_READ_ONLY, _SCOPES.API_KEY_SCOPE_FULL)
    }
    request = auth_pb2.GetCurrentUserRequest()
    for scope, secret in keys.items():
        seen = await admin.auth.GetCurrentUser(request, metadata=admin.md(secret))
        # An ai or read_only key of an admin acts as a user (admin RPCs refuse it): it must not say ROLE_ADMIN.
        acting = auth_pb2.ROLE_ADMIN if scope == _SCOPES.API_KEY_SCOPE_FULL else auth_pb2.ROLE_USER
        assert (seen.user.role, seen.account_role, seen.api_key_scope) == (acting, auth_pb2.ROLE_ADMIN, scope)
    session = await admin.auth.GetCurrentUser(request, metadata=admin.md())
    assert (session.user.role, session.account_role, session.api_key_scope) == (
        auth_pb2.ROLE_ADMIN,
        auth_pb2.ROLE_ADMIN,
        _SCOPES.API_KEY_SCOPE_UNSPECIFIED,
    )


async def test_expired_wrong_and_malformed_keys_are_refused(client: MeshClient, mesh: MeshServer) -> None:
    me = await client.register()
    soon = Timestamp(seconds=int(time.time()) + 2)
    created = await create_key(client, "brief", expire=soon)
    assert (await client.me(created.secret)).id == me.user.id
    while time.time() < soon.seconds + 0.1:  # noqa: ASYNC110 - the key's own clock, not a race
        await asyncio.sleep(0.1)
    expired = await fails(
        client.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=client.md(created.secret))
    )
    assert expired.code == grpc.StatusCode.UNAUTHENTICATED and expired.reason == "API_KEY_EXPIRED"
    assert "expired" in expired.message
    wrong = created.secret[:-4] + ("AAAA" if not created.secret.endswith("AAAA") else "BBBB")
    bad = await fails(client.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=client.md(wrong)))
    assert bad.code == grpc.StatusCode.UNAUTHENTICATED and bad.reason == "API_KEY_INVALID"
    assert wrong not in bad.message
    junk = await fails(client.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=client.md("dpn_nope")))
    assert junk.code == grpc.StatusCode.UNAUTHENTICATED and junk.reason == "API_KEY_INVALID"
    reasons = {e["reason"] for e in await _events(mesh, me.user.id, "api_key.refused")}
    assert {"API_KEY_EXPIRED", "API_KEY_INVALID"} <= reasons


async def test_bad_input_names_the_field(client: MeshClient) -> None:
    await client.register()
    stub = keys_of(client)
    cases = {
        "name": api_keys_pb2.CreateApiKeyRequest(name=""),
        "name ": api_keys_pb2.CreateApiKeyRequest(name="x" * 101),
        "expire_time": api_keys_pb2.CreateApiKeyRequest(name="old", expire_time=Timestamp(seconds=1)),
        "expire_time ": api_keys_pb2.CreateApiKeyRequest(
            name="far", expire_time=Timestamp(seconds=int(time.time()) + 400 * 86400)
        ),
    }
    for field, request in cases.items():
        error = await fails(stub.CreateApiKey(request, metadata=client.md()))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and field.strip() in error.violations(), field
    revoke = await fails(stub.RevokeApiKey(api_keys_pb2.RevokeApiKeyRequest(api_key_id="nope"), metadata=client.md()))
    assert revoke.code == grpc.StatusCode.INVALID_ARGUMENT and "api_key_id" in revoke.violations()


async def test_users_never_see_or_revoke_each_others_keys(client: MeshClient) -> None:
    await client.register()
    key = (await create_key(client)).api_key
    other = client.as_other_address()
    await other.register()
    listed = await keys_of(other).ListApiKeys(api_keys_pb2.ListApiKeysRequest(), metadata=other.md())
    assert list(listed.api_keys) == []
    error = await fails(
        keys_of(other).RevokeApiKey(api_keys_pb2.RevokeApiKeyRequest(api_key_id=key.id), metadata=other.md())
    )
    assert error.code == grpc.StatusCode.NOT_FOUND
    admin_only = await fails(
        keys_of(other).ListUserApiKeys(api_keys_pb2.ListUserApiKeysRequest(user_id=key.user_id), metadata=other.md())
    )
    assert admin_only.code == grpc.StatusCode.PERMISSION_DENIED


async def test_admins_list_and_revoke_anyones_keys(client: MeshClient, mesh: MeshServer) -> None:
    me = await client.register()
    created = await create_key(client)
    admin = await _admin(client, mesh)
    listed = await keys_of(admin).ListUserApiKeys(
        api_keys_pb2.ListUserApiKeysRequest(user_id=me.user.id), metadata=admin.md()
    )
    assert [k.id for k in listed.api_keys] == [created.api_key.id]
    await keys_of(admin).RevokeUserApiKey(
        api_keys_pb2.RevokeUserApiKeyRequest(user_id=me.user.id, api_key_id=created.api_key.id), metadata=admin.md()
    )
    refused = await fails(
        client.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=client.md(created.secret))
    )
    assert refused.reason == "API_KEY_REVOKED"
    revoked = await _events(mesh, me.user.id, "api_key.revoked")
    assert revoked and revoked[0]["key"] == created.api_key.id


async def test_disabling_the_account_stops_its_keys(client: MeshClient, mesh: MeshServer) -> None:
    me = await client.register()
    secret = (await create_key(client)).secret
    assert (await client.me(secret)).id == me.user.id  # remembered now
    admin = await _admin(client, mesh)
    await admin.admin.UpdateUser(auth_pb2.UpdateUserRequest(user_id=me.user.id, disabled=True), metadata=admin.md())
    refused = await fails(client.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=client.md(secret)))
    assert refused.code == grpc.StatusCode.UNAUTHENTICATED and refused.reason == "ACCOUNT_UNAVAILABLE"


async def test_revoking_in_the_auth_process_stops_the_key_in_another_at_once(
    real_backend: Backend, tmp_path: Path
) -> None:
    """A files-only process checks keys with auth's VerifyApiKey and remembers them; a revocation (and
    disabling the owner) in the auth process reaches it through the shared change feed."""
    shared = {"redis_prefix": "keys-" + real_backend.redis_prefix}
    auth = await start_mesh(make_settings(real_backend, tmp_path / "auth", only="auth", **shared))
    files = await start_mesh(
        make_settings(real_backend, tmp_path / "files", only="files", auth_address=f"127.0.0.1:{auth.port}", **shared)
    )
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{auth.port}") as auth_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{files.port}") as files_channel,
        ):
            user = MeshClient(auth_channel)
            me = await user.register()
            first, second = (await create_key(user, "one")), (await create_key(user, "two"))
            stub = files_pb2_grpc.FileServiceStub(files_channel)
            keys = files.platform.authenticator.keys
            await eventually(lambda: keys.remembering)
            for created in (first, second):
                await stub.ListFiles(files_pb2.ListFilesRequest(), metadata=user.md(created.secret))
                assert keys.known(created.api_key.id) is not None  # remembered there: no call to auth per use
            await keys_of(user).RevokeApiKey(
                api_keys_pb2.RevokeApiKeyRequest(api_key_id=first.api_key.id), metadata=user.md()
            )
            await eventually(lambda: keys.known(first.api_key.id) is None)
            revoked = await fails(stub.ListFiles(files_pb2.ListFilesRequest(), metadata=user.md(first.secret)))
            assert revoked.code == grpc.StatusCode.UNAUTHENTICATED and revoked.reason == "API_KEY_REVOKED"
            # Scope refusals in the files process reach auth's audit trail too.
            ai_key = await create_key(user, "ai", _SCOPES.API_KEY_SCOPE_AI)
            scoped = await fails(stub.ListFiles(files_pb2.ListFilesRequest(), metadata=user.md(ai_key.secret)))
            assert scoped.reason == "API_KEY_SCOPE"
            refusals = await _events(auth, me.user.id, "api_key.refused")
            assert {(e["reason"], e.get("method", "")) for e in refusals} >= {
                ("API_KEY_REVOKED", ""),
                ("API_KEY_SCOPE", "/devpynode.files.v1.FileService/ListFiles"),
            }
            # Disabling the owner stops the other key there as well.
            admin = await _admin(user, auth)
            await admin.admin.UpdateUser(
                auth_pb2.UpdateUserRequest(user_id=me.user.id, disabled=True), metadata=admin.md()
            )
            await eventually(lambda: keys.known(second.api_key.id) is None)
            disabled = await fails(stub.ListFiles(files_pb2.ListFilesRequest(), metadata=user.md(second.secret)))
            assert disabled.code == grpc.StatusCode.UNAUTHENTICATED and disabled.reason == "ACCOUNT_UNAVAILABLE"
    finally:
        await files.stop(0)
        await auth.stop(0)


async def test_the_secret_is_never_logged(client: MeshClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await client.register()
    created = await create_key(client, "logged?", _SCOPES.API_KEY_SCOPE_READ_ONLY)
    await client.me(created.secret)
    await fails(
        _drain(ai_pb2_grpc.AIRouterServiceStub(client.channel).Generate(_echo("x"), metadata=client.md(created.secret)))
    )
    wrong = created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B")
    await fails(client.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=client.md(wrong)))
    assert caplog.records  # the access log and the audit trail wrote lines
    for record in caplog.records:
        text = f"{record.getMessage()} {record.__dict__}"
        assert created.secret not in text and wrong not in text
        assert created.secret[37:] not in text  # not even the random part alone
