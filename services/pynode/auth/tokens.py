"""Access and service tokens: EdDSA JWTs with every claim checked and the algorithm pinned."""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pynode.auth.keys import SigningKeyring
from pynode.core.errors import Unauthenticated, Unavailable

log = logging.getLogger("pynode.auth.tokens")

OUTAGE_RETRY_SECONDS = 1.0  # while auth is unreachable and no key is known, calls fail fast in between

ALGORITHM = "EdDSA"
ACCESS_TYP = "at+jwt"  # RFC 9068 header type
ACCESS = "access"
SERVICE = "service"
LEEWAY_SECONDS = 5
REQUIRED_CLAIMS = ["iss", "aud", "typ", "exp", "nbf", "iat", "sub", "role", "jti"]


class KeySource(Protocol):
    """Where verifiers find public keys by kid."""

    async def public_key(self, kid: str) -> Ed25519PublicKey | None: ...


class LocalKeySource:
    """Keys from the keyring in this process."""

    def __init__(self, keyring: SigningKeyring) -> None:
        self._keyring = keyring

    async def public_key(self, kid: str) -> Ed25519PublicKey | None:
        return self._keyring.public_key(kid)


@dataclass(frozen=True)
class Claims:
    """The verified claims of a token."""

    subject: str
    role: str
    session_id: str
    typ: str
    expires_at: float


class TokenIssuer:
    """Signs access tokens for sessions and service tokens for services."""

    def __init__(self, keyring: SigningKeyring, issuer: str, audience: str, access_seconds: int) -> None:
        self._keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.access_seconds = access_seconds

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims,
            self._keyring.signer,
            algorithm=ALGORITHM,
            headers={"kid": self._keyring.signer_kid, "typ": ACCESS_TYP},
        )

    def access_token(self, subject: str, session_id: str, role: str, now: float | None = None) -> tuple[str, float]:
        """A token for a user session; returns (token, expiry)."""
        now = time.time() if now is None else now
        expires = now + self.access_seconds
        claims = self._base(subject, role, ACCESS, now, expires) | {"sid": session_id}
        return self._sign(claims), expires

    def service_token(self, service: str, seconds: int = 300) -> tuple[str, float]:
        """A short-lived token for a service identity."""
        now = time.time()
        expires = now + seconds
        return self._sign(self._base(f"service:{service}", SERVICE, SERVICE, now, expires)), expires

    def _base(self, subject: str, role: str, typ: str, now: float, expires: float) -> dict[str, Any]:
        return {
            "iss": self.issuer,
            "aud": self.audience,
            "typ": typ,
            "sub": subject,
            "role": role,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(expires),
            "jti": uuid.uuid4().hex,
        }


class TokenVerifier:
    """Verifies tokens: EdDSA only, known kid, right typ, issuer and audience, inside its lifetime.

    A client sends the same access token for its whole lifetime, and an Ed25519 check costs
    more than the rest of a cheap RPC, so verified tokens are remembered (by their exact text)
    until they expire. Revocation is not this class's concern: the authenticator asks the
    session store on every call (see SessionStore.holder).
    """

    def __init__(self, keys: KeySource, issuer: str, audience: str, cache_size: int = 10_000) -> None:
        self._keys = keys
        self.issuer = issuer
        self.audience = audience
        self._verified: dict[str, Claims] = {}  # oldest first: evicted in insertion order
        self._cache_size = cache_size

    def remembered(self, token: str) -> Claims | None:
        """The claims of a token verified before and not expired since, without awaiting."""
        claims = self._verified.get(token)
        if claims is not None and claims.expires_at + LEEWAY_SECONDS <= time.time():
            del self._verified[token]
            return None
        return claims

    async def verify(self, token: str) -> Claims:
        claims = self.remembered(token)
        if claims is not None:
            return claims
        claims = await self._verify(token)
        if self._cache_size:
            self._verified[token] = claims
            if len(self._verified) > self._cache_size:
                del self._verified[next(iter(self._verified))]
        return claims

    async def _verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("malformed token") from None
        if header.get("alg") != ALGORITHM or header.get("typ") != ACCESS_TYP or not isinstance(header.get("kid"), str):
            raise _invalid("token header is not accepted")
        key = await self._keys.public_key(header["kid"])
        if key is None:
            raise _invalid("token signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("access token expired; refresh it", reason="TOKEN_EXPIRED") from None
        except jwt.PyJWTError as exc:
            raise _invalid(f"token rejected: {exc}") from None
        typ, role = claims.get("typ"), claims.get("role")
        sid = claims.get("sid", "")
        if typ == ACCESS and role in ("user", "admin") and isinstance(sid, str) and sid:
            return Claims(str(claims["sub"]), str(role), sid, typ, float(claims["exp"]))
        if typ == SERVICE and role == SERVICE:
            return Claims(str(claims["sub"]), SERVICE, "", typ, float(claims["exp"]))
        raise _invalid("token type or role is not accepted")


def _invalid(message: str) -> Unauthenticated:
    return Unauthenticated(message, reason="INVALID_TOKEN")


class JwksKeySource:
    """Public keys fetched from a remote auth service's GetJwks, cached, refreshed on an unknown kid.

    `fetch` returns the JWK dicts. Refreshes on unknown kids are rate limited, so garbage
    kids cannot flood auth; the whole set is also replaced every `max_age_seconds`, so a key
    retired from auth stops verifying here too. An auth service that cannot be reached
    makes verification UNAVAILABLE while no keys are known, and keeps the known keys otherwise.
    """

    def __init__(self, fetch: Any, min_refresh_seconds: float = 10.0, max_age_seconds: float = 300.0) -> None:
        self._fetch = fetch
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at = -math.inf
        self._min_refresh = min_refresh_seconds
        self._max_age = max_age_seconds
        self._failed_at = -math.inf
        self._lock = asyncio.Lock()

    async def public_key(self, kid: str) -> Ed25519PublicKey | None:
        age = time.monotonic() - self._fetched_at
        if kid in self._keys and age < self._max_age:
            return self._keys[kid]
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if age >= self._max_age or (kid not in self._keys and age >= self._min_refresh):
                await self._refresh()
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        now = time.monotonic()
        unavailable = Unavailable("the auth service's keys cannot be fetched; retry shortly", retry_after=1.0)
        if not self._keys and now - self._failed_at < OUTAGE_RETRY_SECONDS:
            raise unavailable
        try:
            keys = _parse_jwks(await self._fetch())
        except Exception as exc:
            if not self._keys:
                self._failed_at = now
                raise unavailable from exc
            log.warning("could not refresh token keys from the auth service (%s); keeping the known ones", exc)
            self._fetched_at = now - self._max_age + self._min_refresh  # try again soon, not on every call
            return
        self._keys, self._fetched_at = keys, now


def _parse_jwks(jwks: list[dict[str, str]]) -> dict[str, Ed25519PublicKey]:
    keys: dict[str, Ed25519PublicKey] = {}
    for jwk in jwks:
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
        keys[jwk["kid"]] = Ed25519PublicKey.from_public_bytes(raw)
    return keys
