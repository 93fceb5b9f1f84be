"""Personal API keys: create, list and revoke (owners and admins), and the issuer's check of a presented key.

The secret's format, the scopes and the per-process cache are the contract in `pynode.core.api_keys`. Every
change that matters to a remembered key (revocation, the owner disabled or given another role) is announced
on the key-change channel after it is written, and this process forgets the key before the call returns.
Audit kinds: `api_key.created`, `api_key.revoked`, `api_key.refused` (details `reason`, `key`, `method`).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from pynode.auth.audit import AuditTrail
from pynode.auth.domain import ApiKey
from pynode.auth.ports import ApiKeyRepository, RateLimits, UserRepository
from pynode.core import api_keys as contract
from pynode.core.api_keys import API_KEY_CHANGES_CHANNEL, CachedApiKeys, KeyHolder
from pynode.core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, Unauthenticated
from pynode.core.events import EventFeed
from pynode.core.paging import keyset_page
from pynode.core.principal import ClientInfo, Principal, current_client
from pynode.core.timestamps import utcnow

MAX_KEY_DAYS = 366
MAX_KEYS_PER_USER = 100  # live ones: a runaway script cannot fill the table
TOUCH_SECONDS = 60.0  # last_use_time is kept to about the minute: not a write per check


class ApiKeyService:
    """The API key use cases; the only writer of the `api_keys` table."""

    def __init__(
        self,
        keys: ApiKeyRepository,
        users: UserRepository,
        audit: AuditTrail,
        limiter: RateLimits,
        feed: EventFeed,
    ) -> None:
        self.keys = keys
        self.users = users
        self.audit = audit
        self.limiter = limiter
        self._feed = feed
        self.cache: CachedApiKeys | None = None  # this process's memory, set once the authenticator is built

    # --- owners -----------------------------------------------------------------------------------------

    async def create(self, caller: Principal, name: str, scope: str, expires_at: datetime | None) -> tuple[ApiKey, str]:
        """A new key for the caller and its secret (the only time the secret exists outside the caller)."""
        await self.limiter.hit("create-api-key", "account", caller.subject)
        now = utcnow()
        if expires_at is not None:
            if expires_at <= now:
                raise InvalidArgument(
                    "expire_time must be in the future",
                    [FieldViolation("expire_time", "must be in the future", "IN_THE_PAST")],
                )
            if expires_at > now + timedelta(days=MAX_KEY_DAYS):
                raise InvalidArgument(
                    f"expire_time must be at most {MAX_KEY_DAYS} days away (unset: a key that never expires)",
                    [FieldViolation("expire_time", f"must be at most {MAX_KEY_DAYS} days away", "TOO_FAR")],
                )
        name = name.strip()
        owner = uuid.UUID(caller.subject)
        if len(await self.keys.page(owner, None, MAX_KEYS_PER_USER, now)) >= MAX_KEYS_PER_USER:
            raise FailedPrecondition(
                f"you have {MAX_KEYS_PER_USER} live API keys, the most allowed; revoke one first",
                reason="TOO_MANY_API_KEYS",
            )
        key_id = uuid.uuid4()
        secret = contract.mint(key_id)
        key = ApiKey(key_id, owner, name, scope, contract.digest(secret), now, expires_at)
        await self.keys.add(key)
        await self.audit.record(
            "api_key.created", current_client(), actor=caller.subject, subject=caller.subject, key=str(key_id),
            scope=scope, name=name[:100],
        )  # fmt: skip
        return key, secret

    async def page(self, user_id: str, size: int, token: str, active_only: bool) -> tuple[list[ApiKey], str]:
        """A user's keys, newest first (the servicer says whose: the caller's, or any for admins)."""
        at = utcnow() if active_only else None
        owner = uuid.UUID(user_id)
        return await keyset_page(
            size, token, lambda before, n: self.keys.page(owner, before, n, at), lambda key: (key.created_at, key.id)
        )

    async def revoke(self, caller: Principal, owner_id: str, key_id: str) -> ApiKey:
        """Revoke `owner_id`'s key `key_id` (NOT_FOUND when it is not theirs: ids of others are not confirmed)."""
        key = await self.keys.get(uuid.UUID(key_id))
        if key is None or str(key.user_id) != owner_id:
            raise NotFound("no such API key", reason="API_KEY_NOT_FOUND")
        if key.revoked_at is not None:
            return key
        revoked = await self.keys.revoke(key.id, utcnow())
        assert revoked is not None
        await self._announce([key.id])
        await self.audit.record(
            "api_key.revoked", current_client(), actor=caller.subject, subject=owner_id, key=str(key.id)
        )
        return revoked

    # --- the issuer's checks --------------------------------------------------------------------------

    async def verify(self, secret: str, client_address: str) -> KeyHolder:
        """Who a presented key acts for, or UNAUTHENTICATED with the reason (audited)."""
        client = ClientInfo("", "", client_address or None)
        key_id = contract.key_id_of(secret)
        key = None if key_id is None else await self.keys.get(key_id)
        if key is None or not contract.same_digest(key.secret_hash, contract.digest(secret)):
            # A wrong secret for a real key id is worth its owner's attention: the event is filed under them.
            await self._refuse(client, key_id, "" if key is None else str(key.user_id), "API_KEY_INVALID")
            raise Unauthenticated(
                "this API key is not valid (keys look like dpn_<id>_<secret>; check it was copied whole)",
                reason="API_KEY_INVALID",
            )
        now = utcnow()
        if key.revoked_at is not None:
            await self._refuse(client, key.id, str(key.user_id), "API_KEY_REVOKED")
            raise Unauthenticated("this API key was revoked; create a new one", reason="API_KEY_REVOKED")
        if key.expires_at is not None and key.expires_at <= now:
            await self._refuse(client, key.id, str(key.user_id), "API_KEY_EXPIRED")
            raise Unauthenticated(
                f"this API key expired at {key.expires_at.isoformat(timespec='seconds')}; create a new one",
                reason="API_KEY_EXPIRED",
            )
        user = await self.users.by_id(key.user_id)
        if user is None or user.disabled:
            await self._refuse(client, key.id, str(key.user_id), "ACCOUNT_UNAVAILABLE")
            raise Unauthenticated("the key's account no longer exists or is disabled", reason="ACCOUNT_UNAVAILABLE")
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() >= TOUCH_SECONDS:
            await self.keys.touch(key.id, now)
        expires = None if key.expires_at is None else key.expires_at.timestamp()
        return KeyHolder(str(key.id), str(key.user_id), user.role, key.scope, expires)

    async def refused(self, holder: KeyHolder, method: str, reason: str, client_address: str) -> None:
        """A use another edge refused (its scope, or a role the key's owner lacks)."""
        key_id = uuid.UUID(holder.key_id)  # the contract checked its shape
        await self._refuse(ClientInfo("", "", client_address or None), key_id, holder.user_id, reason, method)

    async def _refuse(
        self, client: ClientInfo, key_id: uuid.UUID | None, user_id: str, reason: str, method: str = ""
    ) -> None:
        # Failures count against the caller's address first: guessing keys fills neither the audit
        # trail nor the database's time. Over the limit, the call is RESOURCE_EXHAUSTED instead.
        await self.limiter.hit("api-key-refused", "address", client.address)
        details = {"reason": reason, "key": "" if key_id is None else str(key_id)}
        if method:
            details["method"] = method[:200]
        await self.audit.record("api_key.refused", client, subject=user_id, **details)

    # --- changes other processes must see ---------------------------------------------------------------

    async def account_changed(self, user_id: str) -> None:
        """The owner was disabled or changed role: every process re-checks the owner's keys."""
        await self._announce(await self.keys.ids_of(uuid.UUID(user_id)))

    async def _announce(self, key_ids: list[uuid.UUID]) -> None:
        for key_id in key_ids:
            if self.cache is not None:
                self.cache.forget(str(key_id))
            await self._feed.publish(API_KEY_CHANGES_CHANNEL, str(key_id))


class LocalKeyChecks:
    """KeyChecks in the issuer's own process: the service itself, no network hop."""

    def __init__(self, service: ApiKeyService) -> None:
        self._service = service

    async def verify(self, secret: str, client_address: str) -> KeyHolder:
        return await self._service.verify(secret, client_address)

    async def refused(self, holder: KeyHolder, method: str, reason: str, client_address: str) -> None:
        await self._service.refused(holder, method, reason, client_address)
