"""The one place that builds everything: settings in, wired services out.

Adapters are picked by URL scheme; nothing is created at import time. Each chosen service module is
built with its own settings section and the shared infrastructure.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from pynode.app import migrate, modules
from pynode.app.settings import Settings
from pynode.core import api_keys, identity
from pynode.core.adapters.memory_events import MemoryEventFeed
from pynode.core.adapters.memory_kv import MemoryKeyValueStore
from pynode.core.adapters.memory_streams import MemoryEventStreams
from pynode.core.adapters.sqlite_kv import FILE_NAME as KV_FILE_NAME
from pynode.core.adapters.sqlite_kv import SqliteKeyValueStore
from pynode.core.db import Database
from pynode.core.events import EventFeed
from pynode.core.executors import Executors
from pynode.core.kv import KeyValueStore
from pynode.core.module import Closer, Gauge, Infrastructure, Registration, ServiceParts
from pynode.core.peers import Peers, ServiceTokens
from pynode.core.settings import SettingsError, StoreSettings
from pynode.core.streams import EventStreams

log = logging.getLogger("pynode.bootstrap")


def build_kv(stores: StoreSettings, data_dir: Path | None = None) -> KeyValueStore:
    """memory:// (kept in the data dir too, unless told not to) or redis:// (rediss://, unix://); the scheme was
    checked by StoreSettings."""
    if urlparse(stores.redis_url).scheme == "memory":
        if data_dir is not None and stores.memory_kv_in_data_dir:
            return SqliteKeyValueStore(data_dir / KV_FILE_NAME, stores.redis_prefix)
        return MemoryKeyValueStore(stores.redis_prefix)
    # Imported for redis:// only: redis-py takes a second or two to import on a busy laptop, for nothing there.
    from pynode.core.adapters.redis_kv import RedisKeyValueStore

    return RedisKeyValueStore(stores.redis_url, stores.redis_prefix)


def build_feed(stores: StoreSettings) -> EventFeed:
    """The event feed beside the key-value store: in-process for memory://, Redis pub/sub otherwise."""
    if urlparse(stores.redis_url).scheme == "memory":
        return MemoryEventFeed()
    from pynode.core.adapters.redis_events import RedisEventFeed

    return RedisEventFeed(stores.redis_url, stores.redis_prefix)


def build_streams(stores: StoreSettings) -> EventStreams:
    """Event streams beside the key-value store: in-process for memory://, Redis Streams otherwise."""
    if urlparse(stores.redis_url).scheme == "memory":
        return MemoryEventStreams(stores.stream_max_events)
    from pynode.core.adapters.redis_streams import RedisEventStreams

    return RedisEventStreams(stores.redis_url, stores.redis_prefix, stores.stream_max_events)


@dataclass
class Platform:
    """Everything one process runs, ready to be served."""

    settings: Settings
    infra: Infrastructure
    authenticator: api_keys.KeyAuthenticator
    parts: dict[str, ServiceParts]
    closers: list[Closer] = field(default_factory=list)

    @property
    def registrations(self) -> list[Registration]:
        return [r for p in self.parts.values() for r in p.registrations]

    @property
    def gauges(self) -> list[Gauge]:
        return [*(g for p in self.parts.values() for g in p.gauges), identity.session_memory_gauge(self.authenticator)]

    def component(self, name: str) -> object:
        """A service module's own wired object (its tools and the tests use it)."""
        return self.parts[name].component

    def describe(self) -> dict[str, str]:
        """The backends in use, for the startup summary (no secrets)."""
        kv = self.settings.stores.redis_url
        found = {
            "database": self.infra.db.engine.url.render_as_string(hide_password=True),
            "kv+events": _without_password(kv) if kv != "memory://" else "in this process (memory://)",
        }
        if kv == "memory://":  # say whether a restart signs people out
            kept = self.settings.stores.memory_kv_in_data_dir
            found["kv+events"] += (
                f"; sign-ins kept across restarts in {self.settings.server.data_dir / KV_FILE_NAME}"
                if kept
                else "; a restart signs everyone out (DEVPYNODE_MEMORY_KV_IN_DATA_DIR=false)"
            )
        for part in self.parts.values():
            found.update(part.backends)
        return found

    async def close(self) -> None:
        """Release every resource, newest first."""
        await release(self.closers)


def _without_password(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@", 1)
    return url


async def release(closers: list[Closer]) -> None:
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


async def open_database(settings: Settings, *, auto_migrate: bool, executors: Executors | None = None) -> Database:
    """The database, reachable and migrated (SQLite migrates itself; others must be migrated); its blocking
    threads come from `executors` (else pools of its own)."""
    data_dir = settings.server.data_dir
    stores = settings.stores
    db = Database(
        stores.resolved_database_url(data_dir),
        stores.database_statement_timeout_seconds,
        stores.database_pool_timeout_seconds,
        executors,
    )
    if db.is_sqlite:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        await _reachable("database", "DEVPYNODE_DATABASE_URL", db.ping)
        if db.is_sqlite and auto_migrate:
            await migrate.upgrade_async(db.url)
        elif not await migrate.is_current(db):
            raise SettingsError(
                "DEVPYNODE_DATABASE_URL: the database schema is not up to date; run `devpynode migrate`"
            )
    except BaseException:
        await db.close()
        raise
    return db


async def build(settings: Settings, *, auto_migrate: bool = True) -> Platform:
    """Wire the services this process runs; on any failure, release what was opened."""
    settings.check_production_safety()
    chosen = modules.chosen(settings.server.chosen())
    names = {m.name for m in chosen}
    issuer = modules.token_issuer().name
    closers: list[Closer] = []
    try:
        peers = Peers(settings.mesh, names, settings.addresses())
        closers.append(peers.close)
        peers.require(issuer)  # fail now, naming the setting, not at the first call
        # Built first so that it is closed last: after every module and the database, whose threads it holds.
        executors = Executors()
        closers.append(executors.close)
        kv = build_kv(settings.stores, settings.server.data_dir)
        closers.append(kv.close)
        await _reachable("Redis server", "DEVPYNODE_REDIS_URL", kv.ping)
        db = await open_database(settings, auto_migrate=auto_migrate, executors=executors)
        closers.append(db.close)
        feed = build_feed(settings.stores)
        closers.append(feed.close)
        streams = build_streams(settings.stores)
        closers.append(streams.close)
        infra = Infrastructure(
            db, kv, feed, peers, settings.mesh, settings.server.dev_mode, settings.server.data_dir, streams, executors
        )
        parts: dict[str, ServiceParts] = {}
        for module in chosen:
            built = await module.build(settings.section(module.name), infra)
            parts[module.name] = built
            closers.extend(built.closers)
        authenticator = next(
            (p.authenticator for p in parts.values() if isinstance(p.authenticator, api_keys.KeyAuthenticator)), None
        ) or identity.remote_authenticator(peers, issuer, kv, feed, settings.mesh)
        fetch = identity.service_token_fetch("+".join(sorted(names)), settings.mesh.service_secret.get_secret_value())
        peers.service_tokens = ServiceTokens(fetch, issuer)
    except BaseException:
        await release(closers)
        raise
    return Platform(settings, infra, authenticator, parts, closers)
