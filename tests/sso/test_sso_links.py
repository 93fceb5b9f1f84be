"""Linking and unlinking provider identities, SSO-only accounts adding a password, the admin's view, and the
last-admin rule under group roles."""

from __future__ import annotations

from pathlib import Path

import grpc
from devpynode.auth.v1 import auth_pb2

from pynode.app.server import MeshServer
from tests.backends import Backend
from tests.client import PASSWORD, MeshClient, fails, new_email
from tests.conftest import auth_of, start_mesh
from tests.oidcprovider import Provider, person
from tests.sso.conftest import SsoClient, sso_settings


async def _link(client: SsoClient, account: str) -> auth_pb2.LinkOidcIdentityResponse:
    flow, secret = await client.start(link=True)
    query = await client.provider_answer(flow, account)
    response: auth_pb2.LinkOidcIdentityResponse = await client.auth.LinkOidcIdentity(
        auth_pb2.LinkOidcIdentityRequest(callback_query=query, binding=secret), metadata=client.md()
    )
    return response


async def _identities(client: MeshClient) -> auth_pb2.ListLinkedIdentitiesResponse:
    response: auth_pb2.ListLinkedIdentitiesResponse = await client.auth.ListLinkedIdentities(
        auth_pb2.ListLinkedIdentitiesRequest(), metadata=client.md()
    )
    return response


async def test_a_password_account_links_an_identity_and_then_signs_in_with_it(
    sso: SsoClient, sso_mesh: MeshServer
) -> None:
    account, email = person("alice")
    local = await sso.register(email)
    linked = await _link(sso, account)
    assert linked.identity.provider == "corp" and linked.identity.subject == account
    listed = await _identities(sso)
    assert [i.subject for i in listed.identities] == [account] and listed.has_password
    response = await sso.as_other_address_sso().sso(account)
    assert response.user.id == local.user.id and not response.account_created
    events, _ = await auth_of(sso_mesh).service.list_audit_events(10, "", local.user.id, "identity.linked")
    assert events and events[0].details["provider"] == "corp"


async def test_a_link_flow_is_not_a_sign_in_and_belongs_to_its_starter(sso: SsoClient) -> None:
    account, _ = person("alice")
    await sso.register()
    flow, secret = await sso.start(link=True)
    query = await sso.provider_answer(flow, account)
    error = await fails(sso.as_other_address_sso().complete(query, secret))  # as a sign-in: refused
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "OIDC_FLOW_INVALID"
    other = sso.as_other_address_sso()
    await other.register()
    flow, secret = await sso.start(link=True)
    query = await sso.provider_answer(flow, account)
    error = await fails(
        other.auth.LinkOidcIdentity(
            auth_pb2.LinkOidcIdentityRequest(callback_query=query, binding=secret), metadata=other.md()
        )
    )
    assert error.reason == "OIDC_FLOW_INVALID"  # another account cannot finish it, even holding the binding


async def test_starting_a_link_needs_a_session(sso: SsoClient) -> None:
    error = await fails(sso.start(link=True))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED


async def test_an_identity_links_to_one_account_only(sso: SsoClient) -> None:
    account, _ = person("alice")
    owner = await sso.sso(account)
    other = sso.as_other_address_sso()
    await other.register()
    error = await fails(_link(other, account))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "OIDC_IDENTITY_IN_USE"
    assert (await sso.as_other_address_sso().sso(account)).user.id == owner.user.id


async def test_the_last_way_to_sign_in_cannot_be_unlinked_until_a_password_is_set(sso: SsoClient) -> None:
    account, email = person("alice")
    await sso.sso(account)
    listed = await _identities(sso)
    assert not listed.has_password
    identity = listed.identities[0]
    unlink = auth_pb2.UnlinkOidcIdentityRequest(issuer=identity.issuer, subject=identity.subject)
    error = await fails(sso.auth.UnlinkOidcIdentity(unlink, metadata=sso.md()))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "LAST_SIGN_IN_METHOD"
    await sso.auth.SetPassword(auth_pb2.SetPasswordRequest(new_password=PASSWORD), metadata=sso.md())
    error = await fails(sso.auth.SetPassword(auth_pb2.SetPasswordRequest(new_password=PASSWORD), metadata=sso.md()))
    assert error.reason == "PASSWORD_ALREADY_SET"
    await sso.auth.UnlinkOidcIdentity(unlink, metadata=sso.md())
    assert not (await _identities(sso)).identities
    assert (await MeshClient(sso.channel).login(email)).user.email == email
    error = await fails(sso.auth.UnlinkOidcIdentity(unlink, metadata=sso.md()))
    assert error.code == grpc.StatusCode.NOT_FOUND


async def test_a_weak_first_password_is_refused(sso: SsoClient) -> None:
    account, _ = person("alice")
    await sso.sso(account)
    error = await fails(sso.auth.SetPassword(auth_pb2.SetPasswordRequest(new_password="password1"), metadata=sso.md()))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_admins_see_a_users_identities_and_users_do_not(sso: SsoClient, sso_mesh: MeshServer) -> None:
    account, _ = person("alice")
    user = await sso.sso(account)
    request = auth_pb2.ListUserIdentitiesRequest(user_id=user.user.id)
    error = await fails(sso.admin.ListUserIdentities(request, metadata=sso.md()))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    admin = MeshClient(sso.channel)
    email = new_email()
    await auth_of(sso_mesh).service.create_admin(email, PASSWORD, "Admin")
    await admin.login(email)
    listed = await admin.admin.ListUserIdentities(request, metadata=admin.md())
    assert [i.subject for i in listed.identities] == [account] and not listed.has_password


async def test_groups_never_demote_the_last_admin(
    own_backend: Backend, oidc_provider: Provider, tmp_path: Path
) -> None:
    mesh = await start_mesh(sso_settings(own_backend, tmp_path, oidc_provider))
    try:
        auth = auth_of(mesh)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
            client = SsoClient(channel, oidc_provider.issuer)
            account, email = person("alice")  # groups: staff, which maps to user
            await auth.service.create_admin(email, PASSWORD, "Only Admin")
            await client.login(email)
            await _link(client, account)
            response = await client.as_other_address_sso().sso(account)
            assert response.user.role == auth_pb2.ROLE_ADMIN  # kept: it is the last enabled admin
            events, _ = await auth.service.list_audit_events(10, "", response.user.id, "user.role_kept")
            assert events and events[0].details["reason"] == "LAST_ADMIN"
    finally:
        await mesh.stop(0)
