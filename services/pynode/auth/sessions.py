"""Login sessions and their refresh token families, kept in the key-value store (Redis or memory).

A refresh token is `<session id>.<secret>`; only SHA-256 of the secret is
stored. Rotation is a compare-and-set on the session record, so two
concurrent refreshes can never both consume the same token, and a family has
one live token at a time: a replay inside the grace window gets the successor
that was already issued (never a second branch), a replay of any older token of
the family is reuse and revokes it, and a secret never issued for the session
is just invalid (knowing a session id, which every access token shows, is not
enough to end it).

Every authenticated call, in any process, asks whether its session is still live
(`pynode.core.identity.CachedSessionLiveness`, which remembers holders between calls). Every change
that matters to authorization (revocation, role) is therefore announced on the event feed,
and this process's own memory forgets the session before the call that changed it returns.
The record and channel formats are the contract in `pynode.core.identity`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator

from pynode.auth.domain import LoginSession
from pynode.core.errors import Unauthenticated, Unavailable
from pynode.core.events import EventFeed
from pynode.core.identity import SESSION_CHANGES_CHANNEL, CachedSessionLiveness
from pynode.core.identity import session_key as _session_key
from pynode.core.kv import KeyValueStore

RETIRED_KEPT = 64  # older tokens of a family recognised as reuse; older still are merely invalid
_RETIRED_HEX = 16  # 64 bits of each retired token's hash: ample to tell issued from guessed
_HANDOFF_CONTEXT = b"devpynode refresh-token handoff:"


def _user_key(user_id: str) -> str:
    return f"auth:user-sessions:{user_id}"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _encode(session: LoginSession) -> str:
    return json.dumps(dataclasses.asdict(session), separators=(",", ":"))


def _decode(raw: str) -> LoginSession:
    return LoginSession(**json.loads(raw))


def _contains(hashes: list[str], digest: str) -> bool:
    return any(hmac.compare_digest(h, digest) for h in hashes)


def _new_secret() -> tuple[str, bytes]:
    raw = secrets.token_bytes(32)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), raw


def _pad(previous_secret: str, sid: str) -> bytes:
    # A one-time pad from the previous secret: each secret seals exactly one successor.
    return hmac.new(previous_secret.encode(), _HANDOFF_CONTEXT + sid.encode(), hashlib.sha256).digest()


def _seal(successor: bytes, previous_secret: str, sid: str) -> str:
    return bytes(a ^ b for a, b in zip(successor, _pad(previous_secret, sid), strict=True)).hex()


def _unseal(handoff: str, previous_secret: str, sid: str) -> str | None:
    try:
        sealed = bytes.fromhex(handoff)
    except ValueError:
        return None
    if len(sealed) != 32:
        return None
    raw = bytes(a ^ b for a, b in zip(sealed, _pad(previous_secret, sid), strict=True))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class SessionStore:
    """Creates, rotates, lists and revokes login sessions (auth's SessionRepository)."""

    def __init__(
        self,
        kv: KeyValueStore,
        feed: EventFeed,
        liveness: CachedSessionLiveness,
        lifetime_seconds: float,
        grace_seconds: float,
    ) -> None:
        self._kv = kv
        self._feed = feed
        self._liveness = liveness
        self.lifetime_seconds = lifetime_seconds
        self.grace_seconds = grace_seconds

    async def _announce(self, sid: str) -> None:
        """Tell every process (this one first) that what it knows of `sid` is out of date."""
        self._liveness.forget(sid)
        await self._feed.publish(SESSION_CHANGES_CHANNEL, sid)

    @contextlib.asynccontextmanager
    async def _changing(self, sid: str) -> AsyncIterator[None]:
        """Announce a change to `sid` before it is written and again after. Should this process
        die between its write and the second announcement, the first has already made every
        other process forget; only a read in the instant between the two could be remembered."""
        await self._announce(sid)
        yield
        await self._announce(sid)

    async def create(self, user_id: str, role: str, user_agent: str, ip_address: str) -> tuple[LoginSession, str]:
        """A new session and its first refresh token."""
        now = time.time()
        secret = secrets.token_urlsafe(32)
        session = LoginSession(
            id=str(uuid.uuid4()),
            user_id=user_id,
            role=role,
            created_at=now,
            expires_at=now + self.lifetime_seconds,
            last_used_at=now,
            user_agent=user_agent,
            ip_address=ip_address,
            current=[_digest(secret)],
        )
        await self._kv.set(_session_key(session.id), _encode(session), self.lifetime_seconds)
        await self._kv.set_add(_user_key(user_id), session.id, self.lifetime_seconds)
        return session, f"{session.id}.{secret}"

    async def get(self, sid: str) -> LoginSession | None:
        """A live session, or None."""
        raw = await self._kv.get(_session_key(sid))
        return _decode(raw) if raw else None

    async def issued(self, refresh_token: str) -> LoginSession:
        """The session `refresh_token` was issued for (its current, previous or a retired secret, compared in
        constant time), changing nothing; Unauthenticated, as `rotate` says it, when the secret is not one of
        them. What may spend the owner's budgets: a session id alone (every access token shows it) is not."""
        sid, _, secret = refresh_token.partition(".")
        if not sid or not secret:
            raise Unauthenticated("refresh token is malformed; sign in again", reason="INVALID_REFRESH_TOKEN")
        raw = await self._kv.get(_session_key(sid))
        if raw is None:
            raise Unauthenticated("refresh token expired or revoked; sign in again", reason="SESSION_ENDED")
        session = _decode(raw)
        digest = _digest(secret)
        known = [_contains(session.current, digest), _contains(session.previous, digest)]
        known.append(_contains(session.retired, digest[:_RETIRED_HEX]))  # every list read: no early exit
        if not any(known):
            raise Unauthenticated("refresh token is not valid; sign in again", reason="INVALID_REFRESH_TOKEN")
        return session

    async def rotate(self, refresh_token: str) -> tuple[LoginSession, str]:
        """Consume a refresh token and return its successor.

        The token just rotated is accepted again within the grace window and answered with the
        same successor; an older token of the family revokes the family; anything else is invalid.
        """
        sid, _, secret = refresh_token.partition(".")
        if not sid or not secret:
            raise Unauthenticated("refresh token is malformed; sign in again", reason="INVALID_REFRESH_TOKEN")
        digest = _digest(secret)
        for _attempt in range(8):
            raw = await self._kv.get(_session_key(sid))
            if raw is None:
                raise Unauthenticated("refresh token expired or revoked; sign in again", reason="SESSION_ENDED")
            session = _decode(raw)
            now = time.time()
            if not _contains(session.current, digest):
                return session, await self._replayed(session, secret, digest, now)
            new_secret, new_raw = _new_secret()
            retired = [*session.retired, *(h[:_RETIRED_HEX] for h in session.previous)]
            session.retired = retired[-RETIRED_KEPT:]
            session.previous, session.current, session.rotated_at = session.current, [_digest(new_secret)], now
            session.handoff = _seal(new_raw, secret, sid)
            session.last_used_at = now
            ttl = session.expires_at - now
            if ttl <= 0:
                raise Unauthenticated("session expired; sign in again", reason="SESSION_ENDED")
            if await self._kv.compare_and_set(_session_key(sid), raw, _encode(session), ttl):
                return session, f"{sid}.{new_secret}"
        raise Unavailable("session is being refreshed concurrently; retry", retry_after=0.1)

    async def _replayed(self, session: LoginSession, secret: str, digest: str, now: float) -> str:
        """A token that is not the family's current one: the issued successor, or an error."""
        if _contains(session.previous, digest):
            successor = _unseal(session.handoff, secret, session.id)
            in_grace = now - session.rotated_at <= self.grace_seconds
            if in_grace and successor is not None and _contains(session.current, _digest(successor)):
                return f"{session.id}.{successor}"  # nothing new is issued: the lost response, again
        elif not _contains(session.retired, digest[:_RETIRED_HEX]):
            raise Unauthenticated("refresh token is not valid; sign in again", reason="INVALID_REFRESH_TOKEN")
        await self.revoke(session.id)
        raise Unauthenticated(
            "refresh token was already used; the session is revoked, sign in again",
            reason="REFRESH_TOKEN_REUSED",
        )

    async def list_for_user(self, user_id: str) -> list[LoginSession]:
        """Live sessions of a user, newest first (dead ids are pruned from the index)."""
        sids = sorted(await self._kv.set_members(_user_key(user_id)))
        raws = await self._kv.get_many([_session_key(s) for s in sids])
        live = []
        for sid, raw in zip(sids, raws, strict=True):
            if raw is None:
                await self._kv.set_remove(_user_key(user_id), sid)
            else:
                live.append(_decode(raw))
        return sorted(live, key=lambda s: (s.created_at, s.id), reverse=True)

    async def revoke(self, sid: str) -> bool:
        """End one session; access tokens carrying its sid stop working at once."""
        raw = await self._kv.get(_session_key(sid))
        if raw is None:
            return False  # gone already; whoever ended it announced it, and expiry needs no announcement
        async with self._changing(sid):
            await self._kv.delete(_session_key(sid))
        await self._kv.set_remove(_user_key(_decode(raw).user_id), sid)
        return True

    async def revoke_user(self, user_id: str, *, keep: str = "") -> int:
        """End every session of a user except `keep`; returns how many ended."""
        ended = 0
        for sid in await self._kv.set_members(_user_key(user_id)):
            if sid != keep and await self.revoke(sid):
                ended += 1
        return ended

    async def set_role(self, user_id: str, role: str) -> None:
        """Carry a role change into live sessions, so authorization sees it at once."""
        for session in await self.list_for_user(user_id):
            key = _session_key(session.id)
            async with self._changing(session.id):
                for _attempt in range(8):
                    raw = await self._kv.get(key)
                    if raw is None:
                        break
                    updated = _decode(raw)
                    updated.role = role
                    if await self._kv.compare_and_set(key, raw, _encode(updated), updated.expires_at - time.time()):
                        break
