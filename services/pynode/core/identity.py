"""The platform's identity kernel: how every process verifies tokens, the contract with the token issuer.

The issuer is whichever module serves `ISSUER_SERVICE` (auth does); the app finds it in the module list.
What a process that does not run the issuer reads, and nothing else (the README's "Token verification"
section documents the same):
- public keys from auth's `GetJwks` (`JwksKeySource`), refreshed on an unknown `kid` and every 5 minutes;
- access tokens: EdDSA JWTs, header `typ: at+jwt` with a `kid`, claims `iss aud typ exp nbf iat sub role jti`
  (+ `sid` for user tokens);
- the session record `<prefix>auth:session:<sid>` in the shared key-value store (JSON with at least
  `user_id`, `role`, `expires_at`): a token whose session record is gone is refused;
- the channel `<prefix>auth:session-changes` on the event feed: a session id published there must be
  forgotten at once.
The issuer's writers (auth's sessions.py and tokens.py) use the same formats from here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc

from pynode.core import api_keys, deadlines
from pynode.core.cache import FeedInvalidation, LocalEntries
from pynode.core.errors import Unauthenticated, Unavailable
from pynode.core.events import EventFeed
from pynode.core.kv import KeyValueStore
from pynode.core.module import Gauge
from pynode.core.peers import Peers, ServiceTokenFetch
from pynode.core.principal import Principal
from pynode.core.settings import MeshSettings

log = logging.getLogger("pynode.identity")

# The gRPC service whose GetJwks and IssueServiceToken this kernel calls: the module serving it is the issuer.
ISSUER_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name

ALGORITHM = "EdDSA"
ACCESS_TYP = "at+jwt"  # RFC 9068 header type
ACCESS = "access"
SERVICE = "service"
USER_ROLES = ("user", "admin")
LEEWAY_SECONDS = 5
REQUIRED_CLAIMS = ["iss", "aud", "typ", "exp", "nbf", "iat", "sub", "role", "jti"]

SESSION_CHANGES_CHANNEL = "auth:session-changes"
HOLDERS_MAX = 10_000
# A last backstop: the feed, not this age, is what makes revocation immediate (see sessions.py).
HOLDER_TRUST_SECONDS = 30.0
OUTAGE_RETRY_SECONDS = 1.0  # while auth is unreachable and no key is known, calls fail fast in between


def session_key(sid: str) -> str:
    """The key-value key of a session record."""
    return f"auth:session:{sid}"


@dataclass(frozen=True)
class Claims:
    """The verified claims of a token."""

    subject: str
    role: str
    session_id: str
    typ: str
    expires_at: float


class KeySource(Protocol):
    """Where verifiers find public keys by kid."""

    async def public_key(self, kid: str) -> Ed25519PublicKey | None: ...


class TokenVerifier(Protocol):
    """Checks a token's signature and claims."""

    async def verify(self, token: str) -> Claims: ...


class SessionLiveness(Protocol):
    """Whether a session is still live, and who holds it with which role."""

    async def holder(self, sid: str) -> tuple[str, str] | None: ...


class JwtVerifier:
    """Verifies tokens: EdDSA only, known kid, right typ, issuer and audience, inside its lifetime."""

    def __init__(self, keys: KeySource, issuer: str, audience: str) -> None:
        self._keys = keys
        self.issuer = issuer
        self.audience = audience

    async def verify(self, token: str) -> Claims:
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
        if typ == ACCESS and role in USER_ROLES and isinstance(sid, str) and sid:
            return Claims(str(claims["sub"]), str(role), sid, typ, float(claims["exp"]))
        if typ == SERVICE and role == SERVICE:
            return Claims(str(claims["sub"]), SERVICE, "", typ, float(claims["exp"]))
        raise _invalid("token type or role is not accepted")


class CachedTokenVerifier:
    """A TokenVerifier in front of another that remembers verified tokens (by exact text) until they expire.

    A client sends the same access token for its whole lifetime, and an Ed25519 check costs more than
    the rest of a cheap RPC. Revocation is not this layer's concern: the authenticator asks the session
    liveness on every call."""

    def __init__(self, inner: TokenVerifier, size: int = 10_000) -> None:
        self._inner = inner
        # By exact token text, each until its own expiry (the age bound is the token's, not the cache's).
        self._verified: LocalEntries[str, Claims] = LocalEntries(size, math.inf)

    async def verify(self, token: str) -> Claims:
        claims = self._verified.get(token)
        if claims is not None:
            return claims
        claims = await self._inner.verify(token)
        self._verified.keep(token, claims, seconds=claims.expires_at + LEEWAY_SECONDS - time.time())
        return claims


class StoredSessionLiveness:
    """SessionLiveness read from the session records in the key-value store: one read per call."""

    def __init__(self, kv: KeyValueStore) -> None:
        self._kv = kv

    async def record(self, sid: str) -> dict[str, object] | None:
        """The session record's fields the contract names, or None when the session has ended."""
        raw = await self._kv.get(session_key(sid))
        return json.loads(raw) if raw else None

    async def holder(self, sid: str) -> tuple[str, str] | None:
        record = await self.record(sid)
        return None if record is None else (str(record["user_id"]), str(record["role"]))


class CachedSessionLiveness:
    """SessionLiveness in front of the stored records: each process remembers the holders it has read, and
    forgets one the moment its id is published on the session-changes channel.

    While the feed is not live (connecting, reconnecting, or silent for too long) nothing is remembered and
    every call reads the store; on reconnection everything is dropped, since announcements may have been
    missed. A read that raced a change (`forget` between its start and end) is not remembered."""

    def __init__(self, inner: StoredSessionLiveness, feed: EventFeed) -> None:
        self._inner = inner
        # sid -> (user id, role), each for HOLDER_TRUST_SECONDS at most and never past the session's expiry.
        self._holders: LocalEntries[str, tuple[str, str]] = LocalEntries(HOLDERS_MAX, HOLDER_TRUST_SECONDS)
        self._changes = FeedInvalidation(feed, SESSION_CHANGES_CHANNEL, self._holders.drop, self._holders.clear)

    @property
    def remembering(self) -> bool:
        """Whether holders are remembered between calls (the change feed is live)."""
        return self._changes.live

    def holder_known(self, sid: str) -> tuple[str, str] | None:
        """What this process remembers of a session's holder, without asking the store."""
        return self._holders.get(sid) if self._changes.live else None

    def forget(self, sid: str) -> None:
        """Drop what is remembered of `sid` (its record changed or is about to)."""
        self._changes.drop(sid)

    def forget_all(self) -> None:
        self._changes.clear()

    async def holder(self, sid: str) -> tuple[str, str] | None:
        known = self.holder_known(sid)
        if known is not None:
            return known
        generation = self._changes.generation
        record = await self._inner.record(sid)
        if record is None:
            self._holders.drop(sid)
            return None
        holder = str(record["user_id"]), str(record["role"])
        if generation == self._changes.generation and self._changes.live:
            expires_at = record.get("expires_at")
            left = float(expires_at) - time.time() if isinstance(expires_at, int | float) else 0.0
            self._holders.keep(sid, holder, seconds=left)
        return holder


class TokenAuthenticator:
    """The edge's Authenticator: a revoked session's access tokens fail at once, not at expiry."""

    def __init__(self, verifier: TokenVerifier, sessions: CachedSessionLiveness) -> None:
        self._verifier = verifier
        self.sessions = sessions

    async def authenticate(self, token: str) -> Principal:
        claims = await self._verifier.verify(token)
        if claims.typ == SERVICE:
            return Principal(claims.subject, SERVICE, token=token)
        holder = await self.sessions.holder(claims.session_id)
        if holder is None or holder[0] != claims.subject:
            raise Unauthenticated("session has ended; sign in again", reason="SESSION_REVOKED")
        # The session's role, not the token's: role changes apply before the token expires.
        return Principal(claims.subject, holder[1], claims.session_id, token)

    async def still_valid(self, who: Principal) -> None:
        """The session `who` came with has not ended (from the same cache as every call: memory while live)."""
        if who.role == SERVICE or not who.session_id:
            return  # the mesh's own callers: a service token names no session
        holder = await self.sessions.holder(who.session_id)
        if holder is None or holder[0] != who.subject:
            raise Unauthenticated("session has ended; sign in again", reason="SESSION_REVOKED")


def authenticator(
    keys: KeySource, kv: KeyValueStore, feed: EventFeed, issuer: str, audience: str
) -> TokenAuthenticator:
    """Token verification as every process wires it: cached verifier, cached session liveness."""
    verifier = CachedTokenVerifier(JwtVerifier(keys, issuer, audience))
    return TokenAuthenticator(verifier, CachedSessionLiveness(StoredSessionLiveness(kv), feed))


def _invalid(message: str) -> Unauthenticated:
    return Unauthenticated(message, reason="INVALID_TOKEN")


JwksFetch = Callable[[], Awaitable[list[dict[str, str]]]]


class JwksKeySource:
    """Public keys fetched from a remote auth service's GetJwks, cached, refreshed on an unknown kid.

    `fetch` returns the JWK dicts. Refreshes on unknown kids are rate limited, so garbage kids cannot
    flood auth; the whole set is also replaced every `max_age_seconds`, so a key retired from auth stops
    verifying here too. An auth service that cannot be reached makes verification UNAVAILABLE while no
    keys are known, and keeps the known keys otherwise."""

    def __init__(self, fetch: JwksFetch, min_refresh_seconds: float = 10.0, max_age_seconds: float = 300.0) -> None:
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


def jwks_over_grpc(channel: Callable[[], grpc.aio.Channel]) -> JwksFetch:
    """GetJwks on auth's channel, inside the caller's deadline (verification runs within a call)."""

    async def fetch() -> list[dict[str, str]]:
        stub = auth_pb2_grpc.AuthServiceStub(channel())
        response = await stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=deadlines.outbound_timeout(5.0))
        return [{"kty": k.kty, "crv": k.crv, "x": k.x, "kid": k.kid, "alg": k.alg, "use": k.use} for k in response.keys]

    return fetch


def service_token_fetch(service_name: str, secret: str) -> ServiceTokenFetch:
    """IssueServiceToken on the issuer's channel: the call `pynode.core.peers.ServiceTokens` schedules."""

    async def fetch(channel: grpc.aio.Channel, seconds: float) -> tuple[str, float]:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        response = await stub.IssueServiceToken(
            auth_pb2.IssueServiceTokenRequest(service_name=service_name, service_secret=secret), timeout=seconds
        )
        return response.access_token, response.expires_at.seconds + response.expires_at.nanos / 1e9

    return fetch


def remote_authenticator(
    peers: Peers, issuer_module: str, kv: KeyValueStore, feed: EventFeed, mesh: MeshSettings
) -> api_keys.KeyAuthenticator:
    """Token verification in a process that does not run the issuer: keys from its GetJwks over the peer
    channel, sessions from the shared key-value store and its change feed; API keys checked by the issuer's
    VerifyApiKey, remembered until the key-change feed says otherwise."""
    peers.require(issuer_module)
    keys = JwksKeySource(jwks_over_grpc(lambda: peers.channel(issuer_module)))
    tokens = authenticator(keys, kv, feed, mesh.auth_issuer, mesh.auth_audience)
    checks = api_keys.CachedApiKeys(api_keys.GrpcKeyChecks(peers, issuer_module), feed)
    return api_keys.KeyAuthenticator(tokens, checks)


def session_memory_gauge(verifier: TokenAuthenticator | api_keys.KeyAuthenticator) -> Gauge:
    """Whether this process answers session checks from memory (the change feed is live)."""
    sessions = verifier.sessions
    return Gauge(
        "devpynode_session_memory_live",
        "1 while session checks are answered from memory (the change feed is live); 0 while each reads the store.",
        lambda: float(sessions.remembering),
    )
