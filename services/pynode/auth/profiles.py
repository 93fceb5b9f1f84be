"""A short-lived cache of account profiles in the key-value store, for the per-call reads
(GetCurrentUser) that would otherwise hit the database every time.

The password hash is never cached: code that needs it reads the repository.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from pynode.auth.domain import User
from pynode.core.kv import KeyValueStore

TTL_SECONDS = 300.0


def _key(user_id: uuid.UUID) -> str:
    return f"auth:profile:{user_id}"


class ProfileCache:
    """Cache-aside for accounts, invalidated by every write through the auth service."""

    def __init__(self, kv: KeyValueStore) -> None:
        self._kv = kv

    async def get(self, user_id: uuid.UUID) -> User | None:
        raw = await self._kv.get(_key(user_id))
        if raw is None:
            return None
        data = json.loads(raw)
        return User(
            id=user_id,
            email=data["email"],
            password_hash="",
            display_name=data["display_name"],
            role=data["role"],
            disabled=data["disabled"],
            created_at=datetime.fromtimestamp(data["created_at"], UTC),
            updated_at=datetime.fromtimestamp(data["updated_at"], UTC),
        )

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

    async def forget(self, user_id: uuid.UUID) -> None:
        await self._kv.delete(_key(user_id))
