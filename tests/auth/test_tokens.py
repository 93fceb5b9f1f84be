"""Access tokens under attack: algorithm confusion, wrong claims, expiry, tampering, revocation, rotation."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from devpynode.auth.v1 import auth_pb2

from pynode.app.server import MeshServer
from pynode.auth.keys import SigningKeyring, thumbprint
from pynode.auth.tokens import LocalKeySource, TokenIssuer
from pynode.core.errors import Unauthenticated
from pynode.core.identity import JwksKeySource
from pynode.core.identity import JwtVerifier as TokenVerifier
from tests.client import MeshClient, fails
from tests.conftest import auth_of


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def _keyring(mesh: MeshServer) -> SigningKeyring:
    return auth_of(mesh).keyring


def _sign(mesh: MeshServer, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    ring = _keyring(mesh)
    return jwt.encode(
        claims, ring.signer, algorithm="EdDSA", headers=header or {"kid": ring.signer_kid, "typ": "at+jwt"}
    )


async def _rejected(client: MeshClient, token: str) -> str:
    error = await fails(client.me(token=token))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    return error.reason


async def test_token_has_the_promised_shape(client: MeshClient, mesh: MeshServer) -> None:
    await client.register()
    header, claims = _parts(client.token)
    assert header["alg"] == "EdDSA" and header["typ"] == "at+jwt" and header["kid"] == _keyring(mesh).signer_kid
    assert {"iss", "aud", "typ", "exp", "nbf", "iat", "sub", "sid", "role", "jti"} <= set(claims)
    assert claims["typ"] == "access" and claims["role"] == "user"
    assert claims["exp"] - claims["iat"] == 900


async def test_missing_or_malformed_credentials(client: MeshClient) -> None:
    error = await fails(client.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=client.md("")))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason == "MISSING_CREDENTIALS"
    basic = await fails(
        client.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=[("authorization", "Basic abc")])
    )
    assert basic.reason == "MISSING_CREDENTIALS"
    assert await _rejected(client, "not.a.jwt") == "INVALID_TOKEN"


async def test_alg_none_is_rejected(client: MeshClient) -> None:
    await client.register()
    _, claims = _parts(client.token)
    forged = f"{_b64({'alg': 'none', 'typ': 'at+jwt'})}.{_b64(claims)}."
    assert await _rejected(client, forged) == "INVALID_TOKEN"


async def test_hs256_signed_with_the_public_key_is_rejected(client: MeshClient, mesh: MeshServer) -> None:
    await client.register()
    _, claims = _parts(client.token)
    ring = _keyring(mesh)
    public_pem = ring.signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": ring.signer_kid}
    signing_input = f"{_b64(header)}.{_b64(claims)}".encode()
    import hashlib
    import hmac

    signature = base64.urlsafe_b64encode(hmac.new(public_pem, signing_input, hashlib.sha256).digest()).rstrip(b"=")
    forged = f"{signing_input.decode()}.{signature.decode()}"
    assert await _rejected(client, forged) == "INVALID_TOKEN"


_FROM_NOW = 10**9  # marks a time claim as an offset from the moment the test runs


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"aud": "someone-else"}, "INVALID_TOKEN"),
        ({"iss": "evil"}, "INVALID_TOKEN"),
        ({"typ": "refresh"}, "INVALID_TOKEN"),
        ({"role": "superuser"}, "INVALID_TOKEN"),
        ({"exp": _FROM_NOW - 60}, "TOKEN_EXPIRED"),
        ({"nbf": _FROM_NOW + 600}, "INVALID_TOKEN"),
        ({"sid": ""}, "INVALID_TOKEN"),
        ({"sid": str(uuid.uuid4())}, "SESSION_REVOKED"),
    ],
)
async def test_wrong_claims_are_rejected(
    client: MeshClient, mesh: MeshServer, change: dict[str, Any], reason: str
) -> None:
    await client.register()
    _, claims = _parts(client.token)
    # Times are offsets from when the test runs, not from collection: a loaded run reaches a case many minutes
    # later (a not-before 600 s ahead at collection had passed by then, and the token was rightly taken).
    change = {k: int(time.time()) + v - _FROM_NOW if k in ("exp", "nbf") else v for k, v in change.items()}
    assert await _rejected(client, _sign(mesh, claims | change)) == reason


async def test_missing_claim_and_wrong_header_typ_are_rejected(client: MeshClient, mesh: MeshServer) -> None:
    await client.register()
    _, claims = _parts(client.token)
    without_exp = {k: v for k, v in claims.items() if k != "exp"}
    assert await _rejected(client, _sign(mesh, without_exp)) == "INVALID_TOKEN"
    wrong_typ = _sign(mesh, claims, {"kid": _keyring(mesh).signer_kid, "typ": "JWT"})
    assert await _rejected(client, wrong_typ) == "INVALID_TOKEN"


async def test_tampered_payload_and_foreign_key_are_rejected(client: MeshClient) -> None:
    await client.register()
    header, claims = _parts(client.token)
    head, _, signature = client.token.split(".")
    tampered = f"{head}.{_b64(claims | {'role': 'admin'})}.{signature}"
    assert await _rejected(client, tampered) == "INVALID_TOKEN"
    foreign = Ed25519PrivateKey.generate()
    same_kid = jwt.encode(claims, foreign, algorithm="EdDSA", headers={"kid": header["kid"], "typ": "at+jwt"})
    assert await _rejected(client, same_kid) == "INVALID_TOKEN"
    own_kid = jwt.encode(
        claims, foreign, algorithm="EdDSA", headers={"kid": thumbprint(foreign.public_key()), "typ": "at+jwt"}
    )
    assert await _rejected(client, own_kid) == "INVALID_TOKEN"


async def test_rotated_keys_keep_old_tokens_valid() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    before = TokenIssuer(SigningKeyring(old), "iss", "aud", 900)
    token, _ = before.access_token("user-1", "sid-1", "user")
    after = SigningKeyring(new, [old.public_key()])
    verifier = TokenVerifier(LocalKeySource(after), "iss", "aud")
    assert (await verifier.verify(token)).subject == "user-1"
    fresh, _ = TokenIssuer(after, "iss", "aud", 900).access_token("user-2", "sid-2", "user")
    assert jwt.get_unverified_header(fresh)["kid"] == thumbprint(new.public_key())
    retired = TokenVerifier(LocalKeySource(SigningKeyring(new)), "iss", "aud")
    with pytest.raises(Unauthenticated):
        await retired.verify(token)


async def test_remote_services_verify_with_jwks_and_refresh_on_unknown_kid(
    client: MeshClient, mesh: MeshServer
) -> None:
    await client.register()
    fetches = 0

    async def fetch() -> list[dict[str, str]]:
        nonlocal fetches
        fetches += 1
        response = await client.auth.GetJwks(auth_pb2.GetJwksRequest())
        return [{f: getattr(k, f) for f in ("kty", "crv", "x", "kid", "alg", "use")} for k in response.keys]

    keys = JwksKeySource(fetch, min_refresh_seconds=0)
    verifier = TokenVerifier(keys, mesh.platform.settings.mesh.auth_issuer, mesh.platform.settings.mesh.auth_audience)
    assert (await verifier.verify(client.token)).role == "user"
    assert (await verifier.verify(client.token)).role == "user"
    assert fetches == 1  # cached
    assert await keys.public_key("unknown-kid") is None
    assert fetches == 2  # an unknown kid triggers one refresh


async def test_service_tokens(client: MeshClient, mesh: MeshServer) -> None:
    bad = await fails(
        client.auth.IssueServiceToken(auth_pb2.IssueServiceTokenRequest(service_name="chat", service_secret="guess"))
    )
    assert bad.code == grpc.StatusCode.UNAUTHENTICATED and bad.reason == "BAD_SERVICE_SECRET"
    secret = mesh.platform.settings.mesh.service_secret.get_secret_value()
    issued = await client.auth.IssueServiceToken(
        auth_pb2.IssueServiceTokenRequest(service_name="chat", service_secret=secret)
    )
    _, claims = _parts(issued.access_token)
    assert claims["role"] == "service" and claims["sub"] == "service:chat" and claims["exp"] - claims["iat"] == 300
    # A service identity is not a user: user RPCs refuse it.
    error = await fails(client.me(token=issued.access_token))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED


async def test_remote_keys_expire_so_a_retired_key_stops_verifying() -> None:
    keyring_jwks = [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "a"}]
    served = [keyring_jwks]

    async def fetch() -> list[dict[str, str]]:
        return served[-1]

    keys = JwksKeySource(fetch, min_refresh_seconds=60, max_age_seconds=0.05)
    assert await keys.public_key("a") is not None
    served.append([])  # auth retired key "a"
    await asyncio.sleep(0.06)
    assert await keys.public_key("a") is None


async def test_unreachable_auth_is_unavailable_not_unauthenticated() -> None:
    from pynode.core.errors import Unavailable

    calls = 0

    async def fetch() -> list[dict[str, str]]:
        nonlocal calls
        calls += 1
        raise ConnectionError("auth is down")

    keys = JwksKeySource(fetch)
    for _ in range(3):
        with pytest.raises(Unavailable):
            await keys.public_key("a")
    assert calls == 1  # failing fast in between, not one fetch per call
