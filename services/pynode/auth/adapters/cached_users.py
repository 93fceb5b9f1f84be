"""CachedUsers: the UserRepository in front of another, with account profiles cached for the per-call reads
(GetCurrentUser) that would otherwise hit the database every time.

Two levels: the key-value store (shared by every process, 5 minutes) and, in front of it, a few seconds
in this process, which saves a Redis round trip on hot accounts. Every write through this repository
clears both here and announces the change on the event feed, so other processes drop their copy too. A
read racing with a change is returned but not remembered in this process, and nothing is remembered here
while the feed is not live (announcements could be missed); the shared level may still hold a profile read
in another process just before a write there, for at most TTL_SECONDS, as before. When the key-value store
lives in this process (memory://, the embedded default), another process (`devpynode users create-admin`
beside the server) can change an account but cannot reach that store or the feed: the shared level is then
skipped, so such a change shows within NEAR_SECONDS, without a sign-in or a restart. Authorization never reads
profiles (it reads the session), so staleness here can only delay what GetCurrentUser displays. The
password hash is never cached.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from pynode.auth.domain import Profile, User
from pynode.auth.ports import UserRepository
from pynode.core.cache import FeedInvalidation, LocalEntries
from pynode.core.events import EventFeed
from pynode.core.kv import KeyValueStore

CHANGES_CHANNEL = "auth:profile-changes"

TTL_SECONDS = 300.0
NEAR_SECONDS = 5.0
NEAR_MAX = 10_000


def _key(user_id: uuid.UUID | str) -> str:
    return f"auth:profile:{user_id}"


def _encode(profile: Profile) -> str:
    data = {
        "email": profile.email,
        "display_name": profile.display_name,
        "role": profile.role,
        "disabled": profile.disabled,
        "created_at": profile.created_at.timestamp(),
        "updated_at": profile.updated_at.timestamp(),
    }
    return json.dumps(data, separators=(",", ":"))


def _decode(user_id: str, raw: str) -> Profile:
    data = json.loads(raw)
    return Profile(
        id=uuid.UUID(user_id),
        email=data["email"],
        display_name=data["display_name"],
        role=data["role"],
        disabled=data["disabled"],
        created_at=datetime.fromtimestamp(data["created_at"], UTC),
        updated_at=datetime.fromtimestamp(data["updated_at"], UTC),
    )


def _shown(profile: Profile) -> tuple[str, str, str, bool]:
    """What a caller sees of a profile (timestamps aside: they lose microseconds in the store's encoding)."""
    return profile.email, profile.display_name, profile.role, profile.disabled


class CachedUsers:
    """UserRepository: reads of profiles cached, every write passed through and announced."""

    def __init__(self, inner: UserRepository, kv: KeyValueStore, feed: EventFeed, shared: bool = True) -> None:
        # `shared`: whether other processes that write accounts reach `kv` and `feed` (Redis does; memory
        # does not, and then only this process's few seconds are cached).
        self._inner = inner
        self._kv = kv
        self._shared = shared
        self._feed = feed
        # Keyed by the id's text, as callers hold it (a token's `sub`): no UUID parsing per call.
        self._near: LocalEntries[str, Profile] = LocalEntries(NEAR_MAX, NEAR_SECONDS)
        self._changes = FeedInvalidation(feed, CHANGES_CHANNEL, self._near.drop, self._near.clear)

    async def profile(self, user_id: str) -> Profile | None:
        if self._changes.live:
            near = self._near.get(user_id)
            if near is not None:
                return near
        generation = self._changes.generation
        raw = await self._kv.get(_key(user_id)) if self._shared else None
        if raw is not None:
            profile = _decode(user_id, raw)
        else:
            found = await self._inner.profile(user_id)
            if found is None:
                return None
            profile = found
            if generation != self._changes.generation:
                return profile  # changed while it was read: neither level keeps what may be the old one
            if self._shared:
                await self._kv.set(_key(user_id), _encode(profile), TTL_SECONDS)
        if generation == self._changes.generation and self._changes.live:
            self._near.keep(user_id, profile)
        return profile

    async def _forget(self, user_id: uuid.UUID) -> None:
        self._changes.drop(str(user_id))
        await self._kv.delete(_key(user_id))
        await self._feed.publish(CHANGES_CHANNEL, str(user_id))

    async def add(self, user: User) -> None:
        await self._inner.add(user)

    async def by_email(self, email: str) -> User | None:
        return await self._corrected(await self._inner.by_email(email))

    async def by_id(self, user_id: uuid.UUID) -> User | None:
        return await self._corrected(await self._inner.by_id(user_id))

    async def _corrected(self, user: User | None) -> User | None:
        """`user` as just read from the database; a cached profile that shows it otherwise is dropped.

        Another process may change an account without this one hearing of it: `devpynode users create-admin`
        beside a server on the embedded defaults shares the database but neither the key-value store nor the
        feed. A read of the account itself (every sign-in makes one) then corrects what GetCurrentUser shows."""
        if user is None:
            return None
        key = str(user.id)
        cached = self._near.get(key)
        if cached is None:
            raw = await self._kv.get(_key(key))
            cached = _decode(key, raw) if raw is not None else None
        if cached is not None and _shown(cached) != _shown(Profile.of(user)):
            await self._forget(user.id)
        return user

    async def save(self, user: User) -> None:
        await self._inner.save(user)
        await self._forget(user.id)

    async def save_keeping_an_admin(self, user: User) -> bool:
        saved = await self._inner.save_keeping_an_admin(user)
        if saved:
            await self._forget(user.id)
        return saved

    async def page(self, after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[User]:
        return await self._inner.page(after, limit)
