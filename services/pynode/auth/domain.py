"""Auth domain types: accounts and the session records behind refresh tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

ROLES = ("user", "admin")


@dataclass
class User:
    """An account."""

    id: uuid.UUID
    email: str
    password_hash: str
    display_name: str
    role: str
    disabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Profile:
    """What an account shows of itself: a User without its password hash, safe to cache and share."""

    id: uuid.UUID
    email: str
    display_name: str
    role: str
    disabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: User) -> Profile:
        return cls(user.id, user.email, user.display_name, user.role, user.disabled, user.created_at, user.updated_at)


@dataclass
class LoginSession:
    """One login: a refresh token family with an absolute lifetime.

    Only SHA-256 hashes of refresh tokens are kept. `current` are the hashes
    that may be rotated now; `previous` were current until `rotated_at` and are
    accepted for the grace window only (a client that lost the response).
    """

    id: str
    user_id: str
    role: str
    created_at: float
    expires_at: float
    last_used_at: float
    user_agent: str
    ip_address: str
    current: list[str] = field(default_factory=list)
    previous: list[str] = field(default_factory=list)
    rotated_at: float = 0.0


@dataclass(frozen=True)
class IssuedTokens:
    """A token pair as handed to the client."""

    access_token: str
    access_expires_at: float
    refresh_token: str
    refresh_expires_at: float
