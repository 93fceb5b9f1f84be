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


@dataclass(frozen=True)
class CurrentUser:
    """The caller's account and what its credential acts with: a key's scope may cap an admin's role."""

    profile: Profile  # `role` is the account's own
    acting_role: str  # the role this call acts with (GetCurrentUser shows it as the user's role)
    api_key_scope: str = ""  # the key's scope; "" for a signed-in session


@dataclass
class LoginSession:
    """One login: a refresh token family with an absolute lifetime.

    Only SHA-256 hashes of refresh tokens are kept. `current` is the hash of the
    one token that may be rotated now; `previous` was current until `rotated_at`.
    A replay of `previous` within the grace window (a client that lost the
    response) is answered with the same successor: `handoff` is that successor's
    secret encrypted under the previous secret, so only a holder of the previous
    token can read it, and the store alone reveals nothing. `retired` holds short
    hashes of older tokens of this family: presenting one of them is reuse, while a
    secret that was never issued for this session is merely invalid.
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
    handoff: str = ""
    retired: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IssuedTokens:
    """A token pair as handed to the client."""

    access_token: str
    access_expires_at: float
    refresh_token: str
    refresh_expires_at: float


@dataclass(frozen=True)
class AuditEvent:
    """One security event: who (`actor`) did what (`kind`) to which account (`subject`), when, from where.
    `details` are short facts (a reason, a role); never a secret."""

    id: int
    at: datetime
    kind: str
    actor: str
    subject: str
    address: str
    request_id: str
    details: dict[str, str]


@dataclass
class ApiKey:
    """A personal API key as stored: its metadata and the SHA-256 of its secret, never the secret."""

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    scope: str  # pynode.core.api_keys.SCOPES
    secret_hash: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


@dataclass
class LinkedIdentity:
    """An account's identity at an OpenID provider: (issuer, subject) is the key, never the e-mail."""

    issuer: str
    subject: str
    user_id: uuid.UUID
    provider: str
    email: str
    linked_at: datetime
    last_login_at: datetime
