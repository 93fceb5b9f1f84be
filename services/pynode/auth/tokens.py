"""Signing access and service tokens (EdDSA JWTs); their format and verification live in pynode.core.identity."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pynode.auth.keys import SigningKeyring
from pynode.core.identity import ACCESS, ACCESS_TYP, ALGORITHM, SERVICE


class LocalKeySource:
    """Keys from the keyring in this process."""

    def __init__(self, keyring: SigningKeyring) -> None:
        self._keyring = keyring

    async def public_key(self, kid: str) -> Ed25519PublicKey | None:
        return self._keyring.public_key(kid)


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
