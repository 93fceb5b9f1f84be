"""Personal API keys at every edge: the secret's format, what each scope may call, and the cached check.

The contract with the issuer (auth), which every process relies on:
- a key is `dpn_<32 hex: the key's UUID without dashes>_<43 base64url: 256 random bits>`; the issuer stores
  only SHA-256 of the whole text (`digest`), and compares digests in constant time;
- a process checks a key it has not seen with auth's `ApiKeyService.VerifyApiKey` (auth itself calls its
  own service), which audits every refusal and answers the owner, the owner's role now, the scope and
  the expiry;
- the channel `<prefix>auth:api-key-changes` on the event feed carries the id of every key revoked, or
  whose owner was disabled or changed role: a process forgets it at once (`CachedApiKeys`), exactly as
  sessions are forgotten (`pynode.core.identity.CachedSessionLiveness`).

Scopes (`scope_refusal`): a key never calls the account's credential RPCs (every AuthService RPC but
GetCurrentUser, and CreateApiKey): those need a signed-in session. `full` may call the rest with the
owner's role; `ai` only the AI router (and GetCurrentUser); `read_only` only reading RPCs, which are the
ones named `Get*`, `List*`, `Download*` or `Stream*` (AIP's read methods: a method-name rule, so a new
RPC's name says what a read-only key may do with it). `ai` and `read_only` cap the role at user.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import grpc
from devpynode.auth.v1 import api_keys_pb2, api_keys_pb2_grpc

from pynode.core import deadlines
from pynode.core.cache import FeedInvalidation, LocalEntries
from pynode.core.errors import Unavailable
from pynode.core.events import EventFeed
from pynode.core.peers import Peers, peer_error
from pynode.core.principal import ClientInfo, Principal, current_client

if TYPE_CHECKING:  # identity composes this module's classes, so it imports this one
    from pynode.core.identity import CachedSessionLiveness, TokenAuthenticator

log = logging.getLogger("pynode.api_keys")

PREFIX = "dpn_"
_ID_HEX = 32
_SECRET_CHARS = 43  # base64url of 32 bytes, unpadded
API_KEY_CHANGES_CHANNEL = "auth:api-key-changes"
HOLDERS_MAX = 10_000
HOLDER_TRUST_SECONDS = 30.0  # a backstop: the change feed is what makes revocation immediate

FULL, AI, READ_ONLY = "full", "ai", "read_only"
SCOPES = (FULL, AI, READ_ONLY)
READ_VERBS = ("Get", "List", "Download", "Stream")
_AUTH_SERVICE = "devpynode.auth.v1.AuthService"
_AI_SERVICE = "devpynode.ai.v1.AIRouterService"
_ALWAYS = frozenset({f"/{_AUTH_SERVICE}/GetCurrentUser"})
_NEVER = frozenset({"/devpynode.auth.v1.ApiKeyService/CreateApiKey"})


def looks_like_key(token: str) -> bool:
    """Whether a bearer credential is meant as an API key (not an access token)."""
    return token.startswith(PREFIX)


def mint(key_id: uuid.UUID) -> str:
    """A new secret for the key `key_id`."""
    return f"{PREFIX}{key_id.hex}_{secrets.token_urlsafe(32)}"


def key_id_of(secret: str) -> uuid.UUID | None:
    """The key's id a secret names, or None when it does not have the shape of one."""
    body = secret[len(PREFIX) :]
    if not looks_like_key(secret) or len(body) != _ID_HEX + 1 + _SECRET_CHARS or body[_ID_HEX] != "_":
        return None
    try:
        return uuid.UUID(hex=body[:_ID_HEX])
    except ValueError:
        return None


def digest(secret: str) -> str:
    """What is stored of a secret: SHA-256 of its text (256 random bits need no slow hash)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def display_prefix(key_id: uuid.UUID) -> str:
    """The first characters of a key's secret, to recognise it by (the id's start: nothing secret)."""
    return f"{PREFIX}{key_id.hex[:8]}"


def scope_refusal(scope: str, full_method: str) -> str | None:
    """Why a key of `scope` may not call `full_method`, or None when it may."""
    if full_method in _ALWAYS:
        return None
    service, _, method = full_method.lstrip("/").partition("/")
    if full_method in _NEVER or service == _AUTH_SERVICE:
        return f"{method} needs a signed-in session; an API key cannot call it"
    if scope == FULL:
        return None
    if scope == AI:
        return None if service == _AI_SERVICE else f"an AI-scoped API key may call the AI router only, not {method}"
    if scope == READ_ONLY:
        return None if method.startswith(READ_VERBS) else f"a read-only API key cannot call {method}"
    return f"this API key's scope ({scope}) allows nothing"


def capped_role(scope: str, role: str) -> str:
    """The owner's role as far as a key of `scope` carries it."""
    return role if scope == FULL else "user"


@dataclass(frozen=True)
class KeyHolder:
    """Who a valid key acts for."""

    key_id: str
    user_id: str
    role: str  # the owner's role now
    scope: str
    expires_at: float | None  # epoch seconds; None = never


class KeyChecks(Protocol):
    """The issuer's checks (auth's own service in its process, VerifyApiKey elsewhere)."""

    async def verify(self, secret: str, client_address: str) -> KeyHolder:
        """The key's holder, or Unauthenticated (the refusal audited)."""

    async def refused(self, holder: KeyHolder, method: str, reason: str, client_address: str) -> None:
        """Record a use the edge refused (its scope)."""


@runtime_checkable
class KeyRefusals(Protocol):
    """What the edge tells when it refuses a key's call for its scope."""

    async def key_refused(self, who: Principal, method: str, reason: str, client_address: str) -> None: ...


class CachedApiKeys:
    """Checks keys through the issuer, remembering holders per process until the key changes.

    Remembered by key id with the secret, so another secret for the same id is checked afresh
    (and refused there, audited). Nothing is remembered while the change feed is not live, and a check
    that raced an announcement is not remembered (the same rules as session holders)."""

    def __init__(self, checks: KeyChecks, feed: EventFeed, clock: Callable[[], float] = time.time) -> None:
        self.checks = checks
        self._clock = clock
        # key id (32 hex) -> (the secret, its holder)
        self._holders: LocalEntries[str, tuple[str, KeyHolder]] = LocalEntries(HOLDERS_MAX, HOLDER_TRUST_SECONDS)
        self._changes = FeedInvalidation(feed, API_KEY_CHANGES_CHANNEL, self._drop, self._holders.clear)

    def _drop(self, key_id: str) -> None:
        with contextlib.suppress(ValueError):  # announcements carry canonical ids; anything else names no key
            self._holders.drop(uuid.UUID(key_id).hex)

    @property
    def remembering(self) -> bool:
        return self._changes.live

    def known(self, key_id: str) -> KeyHolder | None:
        """What this process remembers of a key, without asking the issuer."""
        found = self._holders.get(uuid.UUID(key_id).hex) if self._changes.live else None
        return None if found is None else found[1]

    def forget(self, key_id: str) -> None:
        """Drop what is remembered of `key_id` (it changed, or is about to)."""
        self._changes.drop(key_id)

    async def holder(self, secret: str, client: ClientInfo) -> KeyHolder:
        # Remembered under the id's hex as the secret spells it (no UUID parsing on the hot path), with the
        # secret itself, compared in constant time: in this process's memory only, as the bearer token already
        # is for the call's length (the database holds the digest alone). A secret of another shape never
        # matches a remembered one, and goes to the issuer to be refused there.
        found = self._holders.get(secret[len(PREFIX) : len(PREFIX) + _ID_HEX]) if self._changes.live else None
        if found is not None and secret.isascii() and hmac.compare_digest(found[0], secret):
            holder = found[1]
            if holder.expires_at is None or holder.expires_at > self._clock():
                return holder
        generation = self._changes.generation
        holder = await self.checks.verify(secret, client.address)
        if generation == self._changes.generation and self._changes.live:
            left = None if holder.expires_at is None else holder.expires_at - self._clock()
            self._holders.keep(uuid.UUID(holder.key_id).hex, (secret, holder), seconds=left)
        return holder


class GrpcKeyChecks:
    """KeyChecks over the peer channel to the issuer, with this process's service token."""

    def __init__(self, peers: Peers, issuer_module: str) -> None:
        self._peers = peers
        self._issuer = issuer_module

    async def _options(self) -> dict[str, object]:
        tokens = self._peers.service_tokens
        if tokens is None:
            raise Unavailable("service tokens are not configured in this process")
        token = await tokens.token(self._peers.channel(tokens.issuer))
        return {"timeout": deadlines.outbound_timeout(5.0), "metadata": [("authorization", f"Bearer {token}")]}

    async def verify(self, secret: str, client_address: str) -> KeyHolder:
        stub = api_keys_pb2_grpc.ApiKeyServiceStub(self._peers.channel(self._issuer))
        # A real key is 80 characters: a longer one is refused (and audited) there all the same, not turned
        # into that RPC's INVALID_ARGUMENT.
        request = api_keys_pb2.VerifyApiKeyRequest(secret=secret[:200], client_address=client_address[:64])
        try:
            answer = await stub.VerifyApiKey(request, **await self._options())  # type: ignore[arg-type]
        except grpc.aio.AioRpcError as error:
            raise peer_error(error, self._issuer) from None
        expires = answer.expire_time.ToSeconds() if answer.HasField("expire_time") else None
        return KeyHolder(answer.api_key_id, answer.user_id, answer.role, scope_name(answer.scope), expires)

    async def refused(self, holder: KeyHolder, method: str, reason: str, client_address: str) -> None:
        stub = api_keys_pb2_grpc.ApiKeyServiceStub(self._peers.channel(self._issuer))
        request = api_keys_pb2.ReportApiKeyRefusalRequest(
            api_key_id=holder.key_id,
            user_id=holder.user_id,
            method=method[:200],
            reason=reason,
            client_address=client_address[:64],
        )
        await stub.ReportApiKeyRefusal(request, **await self._options())  # type: ignore[arg-type]


_SCOPE_NAMES = {
    api_keys_pb2.API_KEY_SCOPE_FULL: FULL,
    api_keys_pb2.API_KEY_SCOPE_AI: AI,
    api_keys_pb2.API_KEY_SCOPE_READ_ONLY: READ_ONLY,
}
_SCOPE_VALUES = {name: value for value, name in _SCOPE_NAMES.items()}


def scope_name(value: api_keys_pb2.ApiKeyScope.ValueType) -> str:
    """The scope's name for an ApiKeyScope value (unset is full)."""
    return _SCOPE_NAMES.get(value, FULL)


def scope_value(name: str) -> api_keys_pb2.ApiKeyScope.ValueType:
    return _SCOPE_VALUES[name]


class KeyAuthenticator:
    """The edge's Authenticator for both kinds of credential: access tokens to the token authenticator,
    `dpn_` keys to the cached key checks."""

    def __init__(self, tokens: TokenAuthenticator, keys: CachedApiKeys) -> None:
        self.tokens = tokens
        self.keys = keys

    @property
    def sessions(self) -> CachedSessionLiveness:
        """The token authenticator's session liveness (its gauge and the tests read it)."""
        return self.tokens.sessions

    async def authenticate(self, token: str) -> Principal:
        if not looks_like_key(token):
            return await self.tokens.authenticate(token)
        holder = await self.keys.holder(token, current_client())
        return Principal(
            holder.user_id,
            capped_role(holder.scope, holder.role),
            token=token,
            api_key_id=holder.key_id,
            scope=holder.scope,
        )

    async def still_valid(self, who: Principal) -> None:
        """A key not revoked, expired or its owner disabled; a token's session not ended."""
        if who.api_key_id:
            await self.keys.holder(who.token, current_client())
        else:
            await self.tokens.still_valid(who)

    async def key_refused(self, who: Principal, method: str, reason: str, client_address: str) -> None:
        """Tell the issuer (the audit trail) about a refused use; never fails the refusal itself."""
        holder = KeyHolder(who.api_key_id, who.subject, who.role, who.scope, None)
        try:
            await self.keys.checks.refused(holder, method, reason, client_address)
        except Exception as exc:  # the call is refused whatever happens here
            log.warning("could not audit a refused API key use (%s)", type(exc).__name__)
