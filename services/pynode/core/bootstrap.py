"""The one place that builds everything: settings in, wired services out.

Adapters are picked by URL scheme; nothing is created at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import grpc
from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc

from pynode.auth.adapters.sql_users import SqlUserRepository
from pynode.auth.authenticator import TokenAuthenticator
from pynode.auth.keys import SigningKeyring, load_keyring
from pynode.auth.passwords import PasswordHasher, common_passwords
from pynode.auth.profiles import ProfileCache
from pynode.auth.service import AuthService
from pynode.auth.sessions import SessionStore
from pynode.auth.throttle import LoginLockout, RateLimiter
from pynode.auth.tokens import JwksKeySource, KeySource, LocalKeySource, TokenIssuer, TokenVerifier
from pynode.core import migrate
from pynode.core.adapters.memory_events import MemoryEventFeed
from pynode.core.adapters.memory_kv import MemoryKeyValueStore
from pynode.core.adapters.redis_events import RedisEventFeed
from pynode.core.adapters.redis_kv import RedisKeyValueStore
from pynode.core.db import Database
from pynode.core.events import EventFeed
from pynode.core.kv import KeyValueStore
from pynode.core.principal import Authenticator
from pynode.core.settings import Settings, SettingsError

log = logging.getLogger("pynode.bootstrap")


def build_kv(settings: Settings) -> KeyValueStore:
    """memory:// or redis:// (rediss://, unix://)."""
    scheme = urlparse(settings.redis_url).scheme
    if scheme == "memory":
        return MemoryKeyValueStore(settings.redis_prefix)
    if scheme in ("redis", "rediss", "unix"):
        return RedisKeyValueStore(settings.redis_url, settings.redis_prefix)
    raise SettingsError(f"DEVPYNODE_REDIS_URL: unsupported scheme {scheme!r}; use memory:// or redis://host:port/db")


def build_feed(settings: Settings) -> EventFeed:
    """The event feed beside the key-value store: in-process for memory://, Redis pub/sub otherwise."""
    if urlparse(settings.redis_url).scheme == "memory":
        return MemoryEventFeed()
    return RedisEventFeed(settings.redis_url, settings.redis_prefix)


def check_storage_url(settings: Settings) -> None:
    """file:// or s3:// (the files service uses it)."""
    if not settings.storage_url:
        return
    scheme = urlparse(settings.storage_url).scheme
    if scheme not in ("file", "s3"):
        raise SettingsError(f"DEVPYNODE_STORAGE_URL: unsupported scheme {scheme!r}; use file:///path or s3://bucket")


@dataclass
class AuthComponents:
    """The auth service's wired parts."""

    service: AuthService
    keyring: SigningKeyring
    hasher: PasswordHasher


@dataclass
class Platform:
    """Everything one process runs, ready to be served."""

    settings: Settings
    db: Database
    kv: KeyValueStore
    feed: EventFeed
    sessions: SessionStore
    authenticator: Authenticator
    auth: AuthComponents | None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        """Release every resource, newest first."""
        await self.release(self.closers)

    @staticmethod
    async def release(closers: list[Callable[[], Awaitable[None]]]) -> None:
        """Run closers newest first; one failing does not stop the others."""
        for close in reversed(closers):
            try:
                await close()
            except Exception:
                log.warning("error while closing", exc_info=True)


async def _reachable(what: str, setting: str, check: Callable[[], Awaitable[None]]) -> None:
    try:
        await check()
    except Exception as exc:
        cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
        first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise SettingsError(f"{setting}: cannot reach the {what} ({first_line})") from None


async def open_database(settings: Settings, *, auto_migrate: bool) -> Database:
    """The database, reachable and migrated (SQLite migrates itself; others must be migrated)."""
    db = Database(settings.resolved_database_url())
    if db.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    await _reachable("database", "DEVPYNODE_DATABASE_URL", db.ping)
    if db.is_sqlite and auto_migrate:
        await migrate.upgrade_async(db.url)
    elif not await migrate.is_current(db):
        await db.close()
        raise SettingsError("DEVPYNODE_DATABASE_URL: the database schema is not up to date; run `devpynode migrate`")
    return db


def _remote_key_source(channel: grpc.aio.Channel) -> KeySource:
    """Token keys from the auth process's GetJwks (cached; refreshed on an unknown kid)."""
    stub = auth_pb2_grpc.AuthServiceStub(channel)

    async def fetch() -> list[dict[str, str]]:
        response = await stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=5)
        return [{"kty": k.kty, "crv": k.crv, "x": k.x, "kid": k.kid, "alg": k.alg, "use": k.use} for k in response.keys]

    return JwksKeySource(fetch)


def build_auth(
    settings: Settings, db: Database, kv: KeyValueStore, feed: EventFeed, sessions: SessionStore
) -> AuthComponents:
    """The auth service and what it owns."""
    keyring = load_keyring(settings)
    hasher = PasswordHasher(settings.bcrypt_cost, settings.bcrypt_workers, settings.bcrypt_nice, settings.bcrypt_queue)
    issuer = TokenIssuer(keyring, settings.auth_issuer, settings.auth_audience, settings.access_token_seconds)
    service = AuthService(
        users=SqlUserRepository(db),
        hasher=hasher,
        sessions=sessions,
        issuer=issuer,
        limiter=RateLimiter(kv, settings.rate_limit_per_minute),
        lockout=LoginLockout(
            kv, settings.lockout_free_failures, settings.lockout_max_seconds, settings.account_flood_failures
        ),
        service_secret=settings.service_secret.get_secret_value(),
        profiles=ProfileCache(kv, feed),
    )
    return AuthComponents(service, keyring, hasher)


async def build(settings: Settings, *, auto_migrate: bool = True) -> Platform:
    """Wire the services this process runs; on any failure, release what was opened."""
    settings.check_production_safety()
    check_storage_url(settings)
    if "auth" not in settings.services() and not settings.auth_address:
        raise SettingsError("DEVPYNODE_AUTH_ADDRESS: required when the auth service runs in another process")
    closers: list[Callable[[], Awaitable[None]]] = []
    try:
        kv = build_kv(settings)
        closers.append(kv.close)
        await _reachable("Redis server", "DEVPYNODE_REDIS_URL", kv.ping)
        db = await open_database(settings, auto_migrate=auto_migrate)
        closers.append(db.close)
        feed = build_feed(settings)
        closers.append(feed.close)
        sessions = SessionStore(kv, feed, settings.refresh_token_days * 86400, settings.refresh_grace_seconds)
        auth: AuthComponents | None = None
        keys: KeySource
        if "auth" in settings.services():
            auth = build_auth(settings, db, kv, feed, sessions)
            hasher = auth.hasher

            async def close_hasher() -> None:
                hasher.close()

            closers.append(close_hasher)
            await hasher.warm_up()
            common_passwords()  # load the blocklist now, not inside the first Register call
            keys = LocalKeySource(auth.keyring)
        else:
            channel = grpc.aio.insecure_channel(settings.auth_address)
            closers.append(channel.close)
            keys = _remote_key_source(channel)
    except BaseException:
        await Platform.release(closers)
        raise
    verifier = TokenVerifier(keys, settings.auth_issuer, settings.auth_audience)
    authenticator = TokenAuthenticator(verifier, sessions)
    return Platform(settings, db, kv, feed, sessions, authenticator, auth, closers)


def describe(platform: Platform) -> dict[str, Any]:
    """What was wired, for the startup log line (no secrets)."""
    return {
        "services": list(platform.settings.services()),
        "database": platform.db.engine.url.render_as_string(hide_password=True),
        "kv": type(platform.kv).__name__,
        "events": type(platform.feed).__name__,
        "dev_mode": platform.settings.dev_mode,
    }
