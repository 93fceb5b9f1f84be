"""Login sessions and their refresh token families, kept in the key-value store (Redis or memory).

A refresh token is `<session id>.<secret>`; only SHA-256 of the secret is
stored. Rotation is a compare-and-set on the session record, so two
concurrent refreshes can never both consume the same token.

Every authenticated call asks whether its session is still live. To answer
without a store round trip, each process remembers the holders of sessions it
has seen, and every change that matters to authorization (revocation, role)
is announced on the event feed, so each process forgets the session at once:
the changing process before its call returns, the others when the announcement
arrives (Redis pub/sub: well under a millisecond on one network). While the
feed is not live (reconnecting, or silent for 1.5 s) nothing is remembered and
every call reads the store.
"""

from __future__ import annotations

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
from pynode.core.kv import KeyValueStore

CHANGES_CHANNEL = "auth:session-changes"
HOLDERS_MAX = 10_000
# A last backstop: the feed, not this age, is what makes revocation immediate (see `_changing`).
HOLDER_TRUST_SECONDS = 30.0
MAX_SIBLINGS = 4  # live refresh tokens a family may hold after grace-window replays


def _session_key(sid: str) -> str:
    return f"auth:session:{sid}"


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


class SessionStore:
    """Creates, rotates, lists and revokes login sessions."""

    def __init__(self, kv: KeyValueStore, feed: EventFeed, lifetime_seconds: float, grace_seconds: float) -> None:
        self._kv = kv
        self._feed = feed
        self.lifetime_seconds = lifetime_seconds
        self.grace_seconds = grace_seconds
        # sid -> (user id, role, trusted until on the monotonic clock), oldest first.
        self._holders: dict[str, tuple[str, str, float]] = {}
        # Bumped by every forget: a store read that began before a forget must not be remembered.
        self._generation = 0
        self._changes = feed.subscribe(CHANGES_CHANNEL, self._forget, self._forget_all)

    @property
    def remembering(self) -> bool:
        """Whether session holders are remembered between calls (the change feed is live)."""
        return self._changes.live

    def holder_known(self, sid: str) -> tuple[str, str] | None:
        """What this process remembers of a session's holder, without asking the store."""
        known = self._holders.get(sid)
        if known is not None and known[2] > time.monotonic() and self.remembering:
            return known[0], known[1]
        return None

    def _forget(self, sid: str) -> None:
        self._generation += 1
        self._holders.pop(sid, None)

    def _forget_all(self) -> None:
        self._generation += 1
        self._holders.clear()

    async def _announce(self, sid: str) -> None:
        """Tell every process (this one first) that what it knows of `sid` is out of date."""
        self._forget(sid)
        await self._feed.publish(CHANGES_CHANNEL, sid)

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

    async def holder(self, sid: str) -> tuple[str, str] | None:
        """(user id, role) of a live session, or None: the per-call check, kept lean."""
        known = self.holder_known(sid)
        if known is not None:
            return known
        generation = self._generation
        raw = await self._kv.get(_session_key(sid))
        if raw is None:
            self._holders.pop(sid, None)
            return None
        record = json.loads(raw)
        holder = record["user_id"], record["role"]
        if generation == self._generation and self.remembering:
            lifetime = min(HOLDER_TRUST_SECONDS, record["expires_at"] - time.time())
            self._holders.pop(sid, None)
            self._holders[sid] = (*holder, time.monotonic() + lifetime)
            if len(self._holders) > HOLDERS_MAX:
                del self._holders[next(iter(self._holders))]
        return holder

    async def rotate(self, refresh_token: str) -> tuple[LoginSession, str]:
        """Consume a refresh token and return its successor.

        A token that was already rotated is accepted again only within the grace
        window (its successor stays valid too); any other replay revokes the family.
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
            new_secret = secrets.token_urlsafe(32)
            if _contains(session.current, digest):
                session.previous, session.current, session.rotated_at = session.current, [_digest(new_secret)], now
            elif _contains(session.previous, digest) and now - session.rotated_at <= self.grace_seconds:
                session.current = [*session.current, _digest(new_secret)][-MAX_SIBLINGS:]
            else:
                await self.revoke(sid)
                raise Unauthenticated(
                    "refresh token was already used; the session is revoked, sign in again",
                    reason="REFRESH_TOKEN_REUSED",
                )
            session.last_used_at = now
            ttl = session.expires_at - now
            if ttl <= 0:
                raise Unauthenticated("session expired; sign in again", reason="SESSION_ENDED")
            if await self._kv.compare_and_set(_session_key(sid), raw, _encode(session), ttl):
                return session, f"{sid}.{new_secret}"
        raise Unavailable("session is being refreshed concurrently; retry", retry_after=0.1)

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
