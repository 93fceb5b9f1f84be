"""A short-lived cache of account profiles, for the per-call reads (GetCurrentUser) that
would otherwise hit the database every time.

Two levels: the key-value store (shared by every process, 5 minutes) and, in front of it,
a few seconds in this process, which saves a Redis round trip on hot accounts. A write
clears both here and announces the change on the event feed, so other processes drop
their copy too; a read racing with a write may still show the old profile for up to
NEAR_SECONDS. Authorization never reads this cache (it reads the session), so staleness
here can only delay what GetCurrentUser displays. The password hash is never cached.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

from pynode.auth.domain import Profile, User
from pynode.core.events import EventFeed
from pynode.core.kv import KeyValueStore

CHANGES_CHANNEL = "auth:profile-changes"

TTL_SECONDS = 300.0
NEAR_SECONDS = 5.0
NEAR_MAX = 10_000


def _key(user_id: uuid.UUID | str) -> str:
    return f"auth:profile:{user_id}"


class ProfileCache:
    """Cache-aside for accounts, invalidated by every write through the auth service."""

    def __init__(self, kv: KeyValueStore, feed: EventFeed) -> None:
        self._kv = kv
        self._feed = feed
        # Keyed by the id's text, as callers hold it (a token's `sub`): no UUID parsing per call.
        self._near: dict[str, tuple[float, Profile]] = {}  # oldest first
        self._changes = feed.subscribe(CHANGES_CHANNEL, self._drop, self._near.clear)

    def _drop(self, user_id: str) -> None:
        self._near.pop(user_id, None)

    def _remember(self, profile: Profile) -> None:
        key = str(profile.id)
        self._near.pop(key, None)
        self._near[key] = (time.monotonic() + NEAR_SECONDS, profile)
        if len(self._near) > NEAR_MAX:
            del self._near[next(iter(self._near))]

    def remembered(self, user_id: str) -> Profile | None:
        """The profile held in this process, if fresh, without awaiting."""
        near = self._near.get(user_id)
        if near is not None and near[0] > time.monotonic():
            return near[1]
        return None

    async def get(self, user_id: str) -> Profile | None:
        """The cached profile of the account with this (canonical, lower-case) id, or None."""
        near = self.remembered(user_id)
        if near is not None:
            return near
        raw = await self._kv.get(_key(user_id))
        if raw is None:
            return None
        data = json.loads(raw)
        profile = Profile(
            id=uuid.UUID(user_id),
            email=data["email"],
            display_name=data["display_name"],
            role=data["role"],
            disabled=data["disabled"],
            created_at=datetime.fromtimestamp(data["created_at"], UTC),
            updated_at=datetime.fromtimestamp(data["updated_at"], UTC),
        )
        self._remember(profile)
        return profile

    async def put(self, user: User) -> None:
        data = {
            "email": user.email,
            "display_name": user.display_name,
            "role": user.role,
            "disabled": user.disabled,
            "created_at": user.created_at.timestamp(),
            "updated_at": user.updated_at.timestamp(),
        }
        await self._kv.set(_key(user.id), json.dumps(data, separators=(",", ":")), TTL_SECONDS)
        self._remember(Profile.of(user))

    async def forget(self, user_id: uuid.UUID) -> None:
        self._drop(str(user_id))
        await self._kv.delete(_key(user_id))
        await self._feed.publish(CHANGES_CHANNEL, str(user_id))
