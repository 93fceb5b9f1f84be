"""Attacks on single sign-on, against the real provider: login CSRF, replay, mix-up, foreign codes and ID tokens,
forged tokens, e-mail takeover, group-claim escalation, disabled accounts, and a flow finished on another
process through the shared store."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
import time
import urllib.parse
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest
from devpynode.auth.v1 import auth_pb2

from pynode.app.server import MeshServer
from pynode.auth.domain import LinkedIdentity
from pynode.auth.oidc.provider import OidcProvider, ProviderRefused
from pynode.core.timestamps import utcnow
from tests.backends import Backend
from tests.client import DEVPYNODE, PASSWORD, MeshClient, fails, new_email
from tests.conftest import auth_of, start_mesh
from tests.oidcprovider import (
    OTHER_CLIENT,
    OTHER_REDIRECT,
    OTHER_SECRET,
    WEB_CLIENT,
    WEB_REDIRECT,
    WEB_SECRET,
    Browser,
    Provider,
    person,
)
from tests.sso.conftest import SsoClient, provider_entries, sso_settings


def _rp(mesh: MeshServer, provider: str = "corp") -> OidcProvider:
    oidc = auth_of(mesh).oidc
    assert oidc is not None
    return oidc.providers[provider]


def _with(query: str, **changes: str | None) -> str:
    params = dict(urllib.parse.parse_qsl(query))
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return urllib.parse.urlencode(params)


async def test_login_csrf_a_foreign_code_and_state_is_refused(sso: SsoClient) -> None:
    # The attacker starts a flow, signs in as themselves, and plants the redirect in the victim's tab.
    attacker = sso.as_other_address_sso()
    account, _ = person("mallory")
    flow, attacker_secret = await attacker.start()
    planted = await attacker.provider_answer(flow, account)
    victim = sso.as_other_address_sso()
    error = await fails(victim.complete(planted, os.urandom(32)))  # the victim's tab has its own binding
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "OIDC_FLOW_INVALID"
    # The planted flow was not consumed by the failed attempt: its owner can still finish it, once.
    await fails(attacker.complete(planted, attacker_secret))  # mallory's e-mail is unverified: no signup...
    error = await fails(attacker.complete(planted, attacker_secret))
    assert error.reason == "OIDC_FLOW_INVALID"  # ...and the state is spent either way


async def test_state_is_single_use(sso: SsoClient, sso_mesh: MeshServer) -> None:
    account, _ = person("alice")
    flow, secret = await sso.start()
    query = await sso.provider_answer(flow, account)
    await sso.complete(query, secret)
    replay = sso.as_other_address_sso()
    error = await fails(replay.complete(query, secret))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "OIDC_FLOW_INVALID"
    events, _ = await auth_of(sso_mesh).service.list_audit_events(50, "", "", "oidc.refused")
    assert any(e.address == replay.address and e.details["reason"] == "FLOW_INVALID" for e in events)


async def test_unknown_state_and_polluted_parameters_are_refused(sso: SsoClient) -> None:
    account, _ = person("alice")
    flow, secret = await sso.start()
    query = await sso.provider_answer(flow, account)
    error = await fails(sso.complete(_with(query, state=secrets.token_urlsafe(32)), secret))
    assert error.reason == "OIDC_FLOW_INVALID"
    error = await fails(sso.complete(query + "&state=" + flow.state, secret))  # a second state parameter
    assert error.reason == "OIDC_FLOW_INVALID"
    assert (await sso.complete(query, secret)).user.id  # the real flow is untouched by both


@pytest.mark.parametrize("iss", ["https://evil.example", None, "http://127.0.0.1:1"])
async def test_a_wrong_or_missing_iss_is_a_mix_up(sso: SsoClient, iss: str | None) -> None:
    account, _ = person("alice")
    flow, secret = await sso.start()
    query = await sso.provider_answer(flow, account)
    error = await fails(sso.complete(_with(query, iss=iss), secret))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason == "OIDC_ISSUER_MISMATCH"


async def test_provider_error_is_reported_not_a_session(sso: SsoClient, oidc_provider: Provider) -> None:
    flow, secret = await sso.start()
    query = urllib.parse.urlencode({"error": "access_denied", "state": flow.state, "iss": oidc_provider.issuer})
    error = await fails(sso.complete(query, secret))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason == "OIDC_PROVIDER_ERROR"


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _other_app_sign_in(issuer: str, account: str, nonce: str) -> tuple[str, str, str]:
    """Another application at the same provider signs `account` in: its code, verifier and (exchanged) tokens."""
    verifier, challenge = _pkce()
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": OTHER_CLIENT,
            "redirect_uri": OTHER_REDIRECT,
            "scope": "openid email",
            "state": "x" * 43,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    browser = Browser(issuer)
    try:
        answer = browser.sign_in(f"{issuer}/auth?{query}", account)
    finally:
        browser.close()
    return dict(urllib.parse.parse_qsl(answer))["code"], verifier, answer


async def _other_app_tokens(issuer: str, account: str, nonce: str) -> dict[str, Any]:
    """The other application's tokens for `account` (its own flow, its own code exchange)."""
    code, verifier, _ = await asyncio.to_thread(_other_app_sign_in, issuer, account, nonce)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": OTHER_REDIRECT, "code_verifier": verifier}
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{issuer}/token", data=form, auth=(OTHER_CLIENT, OTHER_SECRET))
    tokens: dict[str, Any] = answer.json()
    return tokens


async def test_a_code_issued_to_another_client_is_refused(sso: SsoClient, oidc_provider: Provider) -> None:
    account, _ = person("alice")
    code, _, _ = await asyncio.to_thread(_other_app_sign_in, oidc_provider.issuer, account, "n" * 43)
    flow, secret = await sso.start()
    query = urllib.parse.urlencode({"code": code, "state": flow.state, "iss": oidc_provider.issuer})
    error = await fails(sso.complete(query, secret))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason == "OIDC_PROVIDER_ERROR"


async def test_an_id_token_issued_to_another_client_is_refused(sso_mesh: MeshServer, oidc_provider: Provider) -> None:
    account, _ = person("alice")
    nonce = secrets.token_urlsafe(32)
    id_token = (await _other_app_tokens(oidc_provider.issuer, account, nonce))["id_token"]
    rp = _rp(sso_mesh)
    with pytest.raises(ProviderRefused, match="another client"):
        await rp.check_id_token(id_token, WEB_CLIENT, nonce)
    assert (await rp.check_id_token(id_token, OTHER_CLIENT, nonce))["sub"] == account  # genuine, just not ours


async def test_userinfo_must_describe_the_id_tokens_subject(sso_mesh: MeshServer, oidc_provider: Provider) -> None:
    account, _ = person("alice")
    access_token = (await _other_app_tokens(oidc_provider.issuer, account, "n" * 43))["access_token"]
    rp = _rp(sso_mesh)
    assert (await rp.userinfo(access_token, account))["sub"] == account
    with pytest.raises(ProviderRefused, match="another subject"):  # an ID token of one person, userinfo of another
        await rp.userinfo(access_token, "somebody-else")


async def test_a_stolen_code_is_useless_without_the_pkce_verifier(sso: SsoClient, oidc_provider: Provider) -> None:
    account, _ = person("alice")
    flow, _ = await sso.start()
    code = dict(urllib.parse.parse_qsl(await sso.provider_answer(flow, account)))["code"]
    async with httpx.AsyncClient() as http:  # even with the client's secret, the provider wants the verifier
        answer = await http.post(
            f"{oidc_provider.issuer}/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_REDIRECT},
            auth=(WEB_CLIENT, WEB_SECRET),
        )
    assert answer.status_code == 400 and answer.json()["error"] in ("invalid_grant", "invalid_request")


def _forge(provider: Provider, **claims: Any) -> str:
    """An ID token signed with the provider's own key (what a buggy or compromised path might hand us)."""
    now = int(time.time())
    body = {"iss": provider.issuer, "sub": "forged", "aud": WEB_CLIENT, "iat": now, "exp": now + 300, "nonce": "n"}
    body.update(claims)
    key = jwt.PyJWK(provider.signing_key)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key.key, "RS256", {"kid": "test-key-1"})


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"iss": "http://127.0.0.1:1"}, "another issuer"),
        ({"aud": OTHER_CLIENT}, "another client"),
        ({"aud": [WEB_CLIENT, OTHER_CLIENT]}, "authorized party"),
        ({"aud": [WEB_CLIENT, OTHER_CLIENT], "azp": OTHER_CLIENT}, "authorized party"),
        ({"nonce": "other"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"iat": None}, "invalid"),
    ],
)
async def test_id_token_checks(
    sso_mesh: MeshServer, oidc_provider: Provider, claims: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ProviderRefused, match=problem):
        await _rp(sso_mesh).check_id_token(_forge(oidc_provider, **claims), WEB_CLIENT, "n")


async def test_small_clock_skew_is_accepted(sso_mesh: MeshServer, oidc_provider: Provider) -> None:
    token = _forge(oidc_provider, exp=int(time.time()) - 30, aud=[WEB_CLIENT, OTHER_CLIENT], azp=WEB_CLIENT)
    assert (await _rp(sso_mesh).check_id_token(token, WEB_CLIENT, "n"))["sub"] == "forged"


async def test_none_and_symmetric_algorithms_are_refused(sso_mesh: MeshServer, oidc_provider: Provider) -> None:
    now = int(time.time())
    body = {"iss": oidc_provider.issuer, "sub": "x", "aud": WEB_CLIENT, "iat": now, "exp": now + 300, "nonce": "n"}
    hs256 = jwt.encode(body, WEB_SECRET, "HS256")  # "signed" with the client secret the RP knows
    unsigned = jwt.encode(body, None, "none")
    for token in (hs256, unsigned):
        with pytest.raises(ProviderRefused, match="algorithm"):
            await _rp(sso_mesh).check_id_token(token, WEB_CLIENT, "n")


async def test_unknown_kid_refetches_the_keys_once(sso_mesh: MeshServer, oidc_provider: Provider) -> None:
    rp = _rp(sso_mesh)
    rp._keys = {"retired-key": rp._keys.get("test-key-1") or next(iter(rp._keys.values()))}  # a stale cache
    rp._keys_at = time.monotonic() - 60
    before = rp.key_fetches
    assert (await rp.check_id_token(_forge(oidc_provider), WEB_CLIENT, "n"))["sub"] == "forged"
    assert rp.key_fetches == before + 1
    # A kid the provider does not publish: one refetch at most, then refused (no fetch per forged token).
    other = jwt.PyJWK(oidc_provider.signing_key).key
    forged = jwt.encode({"sub": "x"}, other, "RS256", {"kid": "not-published"})
    for _ in range(3):
        with pytest.raises(ProviderRefused, match="does not publish"):
            await rp.check_id_token(forged, WEB_CLIENT, "n")
    assert rp.key_fetches <= before + 2


async def test_unverified_email_cannot_take_over_a_local_admin(sso: SsoClient, sso_mesh: MeshServer) -> None:
    account, email = person("mallory")  # claims admin+tag@corp.example with email_verified false
    admin = await auth_of(sso_mesh).service.create_admin(email, PASSWORD, "Admin")
    for provider in ("corp", "autolink"):
        error = await fails(sso.as_other_address_sso().sso(account, provider))
        # Not even OIDC_LINK_REQUIRED: an unproven e-mail does not learn whether an account has it.
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "OIDC_EMAIL_UNVERIFIED"
    assert not await auth_of(sso_mesh).oidc.identities.for_user(admin.id)  # type: ignore[union-attr]


async def test_verified_email_never_auto_links_an_admin(sso: SsoClient, sso_mesh: MeshServer) -> None:
    account, email = person("root")  # verified
    await auth_of(sso_mesh).service.create_admin(email, PASSWORD, "Admin")
    error = await fails(sso.sso(account, "autolink"))
    assert error.reason == "OIDC_LINK_REQUIRED"


async def test_missing_email_verified_counts_as_unverified(sso: SsoClient) -> None:
    account, email = person("noverify")
    await MeshClient(sso.channel).register(email)
    error = await fails(sso.sso(account, "autolink"))
    assert error.reason == "OIDC_EMAIL_UNVERIFIED"
    account, _ = person("noverify")  # and no account is created on an unproven mailbox
    error = await fails(sso.as_other_address_sso().sso(account))
    assert error.reason == "OIDC_EMAIL_UNVERIFIED"


async def test_verified_email_auto_links_a_regular_account_when_opted_in(sso: SsoClient) -> None:
    account, email = person("alice")
    local = await MeshClient(sso.channel).register(email)
    error = await fails(sso.sso(account))  # "corp" does not auto-link
    assert error.reason == "OIDC_LINK_REQUIRED"
    linked = await sso.as_other_address_sso().sso(account, "autolink")
    assert linked.user.id == local.user.id and not linked.account_created


async def test_a_groups_claim_that_is_not_a_list_grants_nothing(sso: SsoClient) -> None:
    account, _ = person("stringy")  # "groups": "platform-admins" (a string, not a list)
    response = await sso.sso(account)
    assert response.user.role == auth_pb2.ROLE_USER


async def test_groups_of_one_provider_mean_nothing_through_another(sso: SsoClient) -> None:
    account, _ = person("root")
    response = await sso.sso(account, "ungrouped")  # no mapping there: platform-admins is just a word
    assert response.user.role == auth_pb2.ROLE_USER


async def test_leaving_the_admin_group_demotes_at_the_next_sign_in(sso: SsoClient, sso_mesh: MeshServer) -> None:
    account, email = person("alice")  # groups: staff (user)
    admin = await auth_of(sso_mesh).service.create_admin(email, PASSWORD, "Was Admin")
    await auth_of(sso_mesh).service.create_admin(new_email(), PASSWORD, "Another Admin")  # not the last admin
    local = MeshClient(sso.channel)
    await local.login(email)
    oidc = auth_of(sso_mesh).oidc
    assert oidc is not None
    # Linked as LinkOidcIdentity would (the link tests drive that RPC).
    now = utcnow()
    await oidc.identities.add(LinkedIdentity(_rp(sso_mesh).config.issuer, account, admin.id, "corp", email, now, now))
    response = await sso.sso(account)
    assert response.user.id == str(admin.id) and response.user.role == auth_pb2.ROLE_USER
    error = await fails(
        local.admin.ListUsers(auth_pb2.ListUsersRequest(), metadata=local.md())
    )  # the demotion reached the live password session too
    assert error.code == grpc.StatusCode.PERMISSION_DENIED


async def test_a_disabled_account_cannot_sign_in_by_sso(sso: SsoClient, sso_mesh: MeshServer) -> None:
    account, _ = person("alice")
    first = await sso.sso(account)
    admin = MeshClient(sso.channel)
    admin_email = new_email()
    await auth_of(sso_mesh).service.create_admin(admin_email, PASSWORD, "Admin")
    await admin.login(admin_email)
    await admin.admin.UpdateUser(auth_pb2.UpdateUserRequest(user_id=first.user.id, disabled=True), metadata=admin.md())
    error = await fails(sso.as_other_address_sso().sso(account))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason == "ACCOUNT_UNAVAILABLE"
    events, _ = await auth_of(sso_mesh).service.list_audit_events(10, "", first.user.id, "login.failed")
    assert events[0].details["reason"] == "ACCOUNT_DISABLED"


async def test_start_is_rate_limited_per_address(backend: Backend, oidc_provider: Provider, tmp_path: Path) -> None:
    mesh = await start_mesh(sso_settings(backend, tmp_path, oidc_provider, rate_limit_per_minute=3))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
            client = SsoClient(channel, oidc_provider.issuer)
            for _ in range(3):
                await client.start()
            error = await fails(client.start())
            assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            await client.as_other_address_sso().start()  # another address is not slowed
    finally:
        await mesh.stop(0)


async def _auth_process(backend: Backend, provider: Provider, prefix: str, data: Path) -> tuple[Any, int]:
    """`devpynode serve --only auth` in a process of its own on the same PostgreSQL and Redis: it and its port."""
    env = {
        **os.environ,
        "DEVPYNODE_DATA_DIR": str(data),
        "DEVPYNODE_GRPC_PORT": "0",
        "DEVPYNODE_HTTP_PORT": "-1",
        "DEVPYNODE_METRICS_PORT": "-1",
        "DEVPYNODE_DATABASE_URL": backend.database_url,
        "DEVPYNODE_REDIS_URL": backend.redis_url,
        "DEVPYNODE_REDIS_PREFIX": prefix,
        "DEVPYNODE_BCRYPT_COST": "4",
        "DEVPYNODE_TRUST_FORWARDED_FOR": "true",
        "DEVPYNODE_AUTH_OIDC_PROVIDERS": json.dumps(provider_entries(provider)),
        "DEVPYNODE_AUTH_OIDC_WEB_REDIRECT_URL": "http://localhost:8080/oidc/callback",
    }
    # Its log lines go to a file: a pipe nobody reads could fill and stall it.
    with (data.parent / f"{data.name}-serve.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *DEVPYNODE, "serve", "--only", "auth", env=env, stdout=asyncio.subprocess.PIPE, stderr=log
        )
    assert process.stdout is not None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert line, "the second auth process ended before its banner"
        found = re.search(r"gRPC +127\.0\.0\.1:(\d+)", line)
        if found:
            return process, int(found.group(1))


async def test_a_flow_started_on_one_process_finishes_on_another(
    backend: Backend, oidc_provider: Provider, tmp_path: Path
) -> None:
    if backend.name == "embedded":
        pytest.skip("the embedded store (memory://) lives in one process; the real set shares Redis")
    prefix = backend.redis_prefix + secrets.token_hex(4) + ":"
    first = await start_mesh(sso_settings(backend, tmp_path / "a", oidc_provider, redis_prefix=prefix))
    second, port = await _auth_process(backend, oidc_provider, prefix, tmp_path / "b")
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as a,
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as b,
        ):
            account, email = person("alice")
            on_a, on_b = SsoClient(a, oidc_provider.issuer), SsoClient(b, oidc_provider.issuer)
            flow, secret = await on_b.start()  # begun in the other process...
            query = await on_b.provider_answer(flow, account)
            response = await on_a.complete(query, secret)  # ...finished here
            assert response.user.email == email and (await on_a.me()).id == response.user.id
            error = await fails(on_b.complete(query, secret))  # and spent for every process at once
            assert error.reason == "OIDC_FLOW_INVALID"
    finally:
        await first.stop(0)
        second.terminate()
        await second.wait()
