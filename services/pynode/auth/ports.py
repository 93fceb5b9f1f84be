"""What the auth service needs from the outside world, as Protocols: the service never names an adapter."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from pynode.auth.domain import ApiKey, AuditEvent, LinkedIdentity, LoginSession, Profile, User


class UserRepository(Protocol):
    """Durable storage of accounts."""

    async def add(self, user: User) -> None:
        """Insert; raises AlreadyExists when the e-mail is taken."""

    async def by_email(self, email: str) -> User | None:
        """The account with this normalised e-mail."""

    async def by_id(self, user_id: uuid.UUID) -> User | None:
        """The account with this id."""

    async def profile(self, user_id: str) -> Profile | None:
        """What the account with this (canonical) id shows of itself: the per-call read."""

    async def save(self, user: User) -> None:
        """Write back a changed account."""

    async def save_keeping_an_admin(self, user: User) -> bool:
        """Write back a changed account unless that would leave no enabled administrator, checked
        atomically against concurrent changes; whether it was written."""

    async def page(self, after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[User]:
        """Accounts ordered by (created_at, id), strictly after `after`."""


class SessionRepository(Protocol):
    """Login sessions and their refresh token families."""

    async def create(self, user_id: str, role: str, user_agent: str, ip_address: str) -> tuple[LoginSession, str]:
        """A new session and its first refresh token."""

    async def get(self, sid: str) -> LoginSession | None:
        """A live session, or None."""

    async def issued(self, refresh_token: str) -> LoginSession:
        """The session a refresh token was issued for, changed in no way; Unauthenticated when it was not."""

    async def rotate(self, refresh_token: str) -> tuple[LoginSession, str]:
        """Consume a refresh token; returns the session and the token's successor."""

    async def list_for_user(self, user_id: str) -> list[LoginSession]:
        """Live sessions of a user, newest first."""

    async def revoke(self, sid: str) -> bool:
        """End one session at once; whether it was live."""

    async def revoke_user(self, user_id: str, *, keep: str = "") -> int:
        """End every session of a user but `keep`; how many ended."""

    async def set_role(self, user_id: str, role: str) -> None:
        """Carry a role change into the user's live sessions."""


class PasswordHashing(Protocol):
    """Slow password hashes, off the event loop."""

    async def hash(self, password: str) -> str:
        """A hash to store."""

    async def verify(self, password: str, hashed: str | None) -> bool:
        """Whether `password` matches; with no hash, the same work and False."""


class TokenMinting(Protocol):
    """Signs access and service tokens."""

    def access_token(self, subject: str, session_id: str, role: str) -> tuple[str, float]:
        """A user session's access token and its expiry."""

    def service_token(self, service: str) -> tuple[str, float]:
        """A service identity's token and its expiry."""


class RateLimits(Protocol):
    """Calls per minute per subject."""

    async def hit(self, action: str, kind: str, subject: str) -> None:
        """Count one call; raises QuotaExceeded over the limit."""


class LoginLockouts(Protocol):
    """Growing delays after failed logins, which cannot lock the owner out."""

    async def check(self, email: str, address: str) -> None:
        """Raise QuotaExceeded while this address is locked out of this account."""

    async def known_good(self, email: str, address: str) -> bool:
        """Whether this address has signed in to this account before."""

    async def failed(self, email: str, address: str) -> bool:
        """Count a failed login; whether this failure locked the address out."""

    async def succeeded(self, email: str, address: str) -> None:
        """Clear the address's count and remember it as known good."""


class AuditStore(Protocol):
    """The append-only record of security events."""

    async def add(self, event: AuditEvent) -> None:
        """Append one event (its id is assigned by the store)."""

    async def page(self, before: int | None, limit: int, user_id: str, kind: str) -> list[AuditEvent]:
        """Events newest first with ids below `before`, optionally of one account (as actor or subject)
        or one kind."""

    async def purge_older_than(self, cutoff: datetime) -> int:
        """Drop events from before `cutoff` (retention); how many went."""


class ApiKeyRepository(Protocol):
    """Durable storage of personal API keys."""

    async def add(self, key: ApiKey) -> None:
        """Insert a new key."""

    async def get(self, key_id: uuid.UUID) -> ApiKey | None:
        """The key with this id, revoked or not."""

    async def page(
        self, user_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int, active_at: datetime | None
    ) -> list[ApiKey]:
        """A user's keys, newest first, after the keyset position `before`; only those live at `active_at`
        when given."""

    async def revoke(self, key_id: uuid.UUID, at: datetime) -> ApiKey | None:
        """Mark the key revoked (kept when it already was); the key as it is now."""

    async def touch(self, key_id: uuid.UUID, at: datetime) -> None:
        """Record a use (callers throttle it)."""

    async def ids_of(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        """Every key id of a user that is not revoked."""


class IdentityRepository(Protocol):
    """Provider identities linked to accounts."""

    async def get(self, issuer: str, subject: str) -> LinkedIdentity | None:
        """The identity with this key."""

    async def add(self, identity: LinkedIdentity) -> None:
        """Insert; raises AlreadyExists when (issuer, subject) is linked already."""

    async def for_user(self, user_id: uuid.UUID) -> list[LinkedIdentity]:
        """An account's identities, oldest link first."""

    async def touch(self, issuer: str, subject: str, email: str, at: datetime) -> None:
        """Record a sign-in through the identity (and the e-mail the provider gave)."""

    async def remove_keeping_one_way_in(self, user_id: uuid.UUID, issuer: str, subject: str) -> bool | None:
        """Unlink unless it is the account's last way to sign in (no password, no other identity), checked
        atomically against concurrent unlinks; None when there is no such link of this account."""
