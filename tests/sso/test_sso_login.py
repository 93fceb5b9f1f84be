"""Signing in with the real test provider: web and CLI loopback flows, account creation, roles from groups,
and what the audit trail records."""

from __future__ import annotations

import asyncio
import urllib.parse

import grpc
from devpynode.auth.v1 import auth_pb2

from pynode.app.server import MeshServer
from tests.client import MeshClient, fails
from tests.conftest import auth_of
from tests.oidcprovider import CLI_CLIENT, WEB_CLIENT, Browser, Provider, person
from tests.sso.conftest import SsoClient


async def test_providers_are_listed_without_signing_in(sso: SsoClient) -> None:
    listed = await sso.auth.ListSignInProviders(auth_pb2.ListSignInProvidersRequest(), metadata=sso.md(""))
    corp = next(p for p in listed.providers if p.id == "corp")
    assert corp.display_name == "Corp SSO" and corp.device_flow and corp.loopback


async def test_first_sign_in_creates_the_account_and_the_next_finds_it(sso: SsoClient) -> None:
    account, email = person("alice")
    first = await sso.sso(account)
    assert first.account_created and first.user.email == email and first.user.role == auth_pb2.ROLE_USER
    assert first.user.display_name == "Alice"
    assert (await sso.me()).id == first.user.id  # the platform's own token, not the provider's
    assert first.tokens.access_token.count(".") == 2 and first.tokens.refresh_token
    again = await sso.as_other_address_sso().sso(account)
    assert not again.account_created and again.user.id == first.user.id


async def test_the_authorization_url_carries_pkce_s256_nonce_and_a_256_bit_state(sso: SsoClient) -> None:
    flow, _ = await sso.start()
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(flow.authorization_url).query))
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["nonce"]) >= 43 and query["state"] == flow.state and len(flow.state) >= 43
    assert query["client_id"] == WEB_CLIENT and query["redirect_uri"] == "http://localhost:8080/oidc/callback"
    assert "client_secret" not in flow.authorization_url


async def test_cli_loopback_flow_uses_the_native_client_on_any_port(sso: SsoClient) -> None:
    account, email = person("alice")
    flow, secret = await sso.start(port=53127)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(flow.authorization_url).query))
    assert query["client_id"] == CLI_CLIENT and query["redirect_uri"] == "http://127.0.0.1:53127/callback"
    response = await sso.complete(await sso.provider_answer(flow, account), secret)
    assert response.user.email == email


async def test_loopback_port_must_be_a_real_port(sso: SsoClient) -> None:
    error = await fails(sso.start(port=80))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "loopback_port" in error.violations()


async def test_unknown_provider_is_not_found(sso: SsoClient) -> None:
    error = await fails(sso.start("nope"))
    assert error.code == grpc.StatusCode.NOT_FOUND and error.reason == "OIDC_PROVIDER_UNKNOWN"


async def test_groups_give_roles_at_each_sign_in(sso: SsoClient, sso_mesh: MeshServer) -> None:
    account, _ = person("root")
    first = await sso.sso(account)
    assert first.user.role == auth_pb2.ROLE_ADMIN
    # The same person through a provider entry that maps no groups keeps the role (no mapping, no change)...
    again = await sso.as_other_address_sso().sso(account, provider="ungrouped")
    assert again.user.role == auth_pb2.ROLE_ADMIN
    events, _ = await auth_of(sso_mesh).service.list_audit_events(50, "", first.user.id, "")
    kinds = [e.kind for e in events]
    assert "register" in kinds and kinds.count("login.succeeded") == 2


async def test_sso_only_account_has_no_password_to_guess(sso: SsoClient) -> None:
    account, email = person("alice")
    await sso.sso(account)
    error = await fails(MeshClient(sso.channel).login(email, ""))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT  # an empty password is refused before any check
    error = await fails(MeshClient(sso.channel).login(email, "anything at all"))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason == "BAD_CREDENTIALS"


async def test_audit_records_sign_in_with_provider(sso: SsoClient, sso_mesh: MeshServer) -> None:
    account, _ = person("alice")
    response = await sso.sso(account)
    events, _ = await auth_of(sso_mesh).service.list_audit_events(20, "", response.user.id, "login.succeeded")
    assert events and events[0].details["method"] == "oidc" and events[0].details["provider"] == "corp"


async def test_device_flow_over_grpc_streams_pending_then_the_session_once(
    sso: SsoClient, oidc_provider: Provider
) -> None:
    account, email = person("alice")
    started = await sso.auth.StartOidcDeviceLogin(
        auth_pb2.StartOidcDeviceLoginRequest(provider="corp"), metadata=sso.md("")
    )
    assert started.user_code and started.verification_uri.startswith(oidc_provider.issuer)
    assert "device_code" not in auth_pb2.StartOidcDeviceLoginResponse.DESCRIPTOR.fields_by_name  # stays on the server
    events = []
    call = sso.auth.AwaitOidcDeviceLogin(
        auth_pb2.AwaitOidcDeviceLoginRequest(flow_id=started.flow_id), metadata=sso.md("")
    )
    first = await call.read()
    assert first.pending  # at once, before any approval
    browser = Browser(oidc_provider.issuer)
    try:
        await asyncio.to_thread(browser.approve_device, started.verification_uri_complete, account)
    finally:
        browser.close()
    while (event := await call.read()) is not grpc.aio.EOF:
        events.append(event)
    assert events[-1].completed.user.email == email and events[-1].completed.tokens.access_token
    again = sso.auth.AwaitOidcDeviceLogin(
        auth_pb2.AwaitOidcDeviceLoginRequest(flow_id=started.flow_id), metadata=sso.md("")
    )
    error = await fails(again.read())
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "OIDC_FLOW_INVALID"


async def test_signup_can_be_closed_while_linked_identities_still_sign_in(sso: SsoClient) -> None:
    account, _ = person("alice")
    error = await fails(sso.sso(account, "closed"))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED and error.reason == "OIDC_SIGNUP_CLOSED"
    first = await sso.as_other_address_sso().sso(account)  # made through a provider entry that allows signup
    again = await sso.as_other_address_sso().sso(account, "closed")
    assert again.user.id == first.user.id


async def test_allowed_email_domains(sso: SsoClient) -> None:
    account, _ = person("outsider")  # verified, but @elsewhere.example
    error = await fails(sso.sso(account, "domain"))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED and error.reason == "OIDC_EMAIL_DOMAIN_NOT_ALLOWED"
    account, email = person("alice")  # @corp.example
    assert (await sso.as_other_address_sso().sso(account, "domain")).user.email == email
