"""The auth service's entry point: its settings and the shared infrastructure in, servicers out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devpynode.auth.v1 import api_keys_pb2, auth_pb2

from pynode.auth.settings import AuthSettings
from pynode.core.module import Infrastructure, Registration, ServiceParts
from pynode.core.settings import SettingsError

if TYPE_CHECKING:  # the adapters are imported by build(): the app and the CLI import this file to list services
    from pynode.auth.api_keys import ApiKeyService
    from pynode.auth.audit import AuditTrail
    from pynode.auth.keys import SigningKeyring
    from pynode.auth.oidc.service import OidcService
    from pynode.auth.passwords import PasswordHasher
    from pynode.auth.service import AuthService
    from pynode.core.api_keys import KeyAuthenticator
    from pynode.core.commands import CommandHost

_AUTH = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
_ADMIN = auth_pb2.DESCRIPTOR.services_by_name["UserAdminService"]
_KEYS = api_keys_pb2.DESCRIPTOR.services_by_name["ApiKeyService"]


@dataclass
class AuthComponents:
    """The auth service's wired parts, for its command-line tools and tests."""

    service: AuthService
    keyring: SigningKeyring
    hasher: PasswordHasher
    authenticator: KeyAuthenticator
    audit: AuditTrail
    api_keys: ApiKeyService
    oidc: OidcService | None = None


async def build_components(settings: AuthSettings, infra: Infrastructure) -> AuthComponents:
    """Auth's parts, hashing warmed up (its pool is the infrastructure's, closed with it)."""
    from pynode.auth import audit
    from pynode.auth.adapters.cached_users import CachedUsers
    from pynode.auth.adapters.sql_api_keys import SqlApiKeyRepository
    from pynode.auth.adapters.sql_audit import SqlAuditStore
    from pynode.auth.adapters.sql_users import SqlUserRepository
    from pynode.auth.api_keys import ApiKeyService, LocalKeyChecks
    from pynode.auth.keys import load_keyring
    from pynode.auth.oidc.config import parse_providers
    from pynode.auth.passwords import PasswordHasher, common_passwords, hashing_pool
    from pynode.auth.service import AuthService
    from pynode.auth.sessions import SessionStore
    from pynode.auth.throttle import LoginLockout, RateLimiter
    from pynode.auth.tokens import LocalKeySource, TokenIssuer
    from pynode.core import api_keys, identity
    from pynode.core.adapters.memory_kv import MemoryKeyValueStore

    providers = parse_providers(
        settings.auth_oidc_providers.get_secret_value(), settings.auth_oidc_file
    )  # bad config: one line, no start
    keyring = load_keyring(settings, dev_mode=infra.dev_mode, data_dir=infra.data_dir)
    tokens = identity.authenticator(
        LocalKeySource(keyring), infra.kv, infra.feed, infra.mesh.auth_issuer, infra.mesh.auth_audience
    )
    pool = hashing_pool(infra.executors, settings.bcrypt_workers, settings.bcrypt_nice)
    hasher = PasswordHasher(settings.bcrypt_cost, pool, settings.bcrypt_queue)
    await hasher.warm_up()
    common_passwords()  # load the blocklist now, not inside the first Register call
    sessions = SessionStore(
        infra.kv,
        infra.feed,
        tokens.sessions,
        settings.refresh_token_days * 86400,
        settings.refresh_grace_seconds,
    )
    trail = audit.AuditTrail(SqlAuditStore(infra.db), settings.audit_retention_days)
    # A store in this process (memory://) is not the one `users create-admin` writes through: see CachedUsers.
    users = CachedUsers(
        SqlUserRepository(infra.db), infra.kv, infra.feed, shared=not isinstance(infra.kv, MemoryKeyValueStore)
    )
    limiter = RateLimiter(infra.kv, settings.rate_limit_per_minute)
    keys = ApiKeyService(SqlApiKeyRepository(infra.db), users, trail, limiter, infra.feed)
    keys.cache = api_keys.CachedApiKeys(LocalKeyChecks(keys), infra.feed)
    authenticator = api_keys.KeyAuthenticator(tokens, keys.cache)
    service = AuthService(
        users=users,
        hasher=hasher,
        sessions=sessions,
        issuer=TokenIssuer(keyring, infra.mesh.auth_issuer, infra.mesh.auth_audience, settings.access_token_seconds),
        limiter=limiter,
        lockout=LoginLockout(
            infra.kv, settings.lockout_free_failures, settings.lockout_max_seconds, settings.account_flood_failures
        ),
        audit=trail,
        service_secret=infra.mesh.service_secret.get_secret_value(),
    )
    service.account_changed = keys.account_changed
    oidc = None
    if providers:
        from pynode.auth.oidc.wiring import build_oidc

        oidc = await build_oidc(service, providers, settings, infra)
    return AuthComponents(service, keyring, hasher, authenticator, trail, keys, oidc)


class AuthModule:
    """devpynode.auth.v1: AuthService, UserAdminService and ApiKeyService."""

    name = "auth"
    settings_class = AuthSettings
    service_names = (_AUTH.full_name, _ADMIN.full_name, _KEYS.full_name)
    migrations: Path | None = Path(__file__).resolve().parent / "migrations"

    def check_production_safety(self, settings: AuthSettings) -> None:
        if not settings.auth_private_keys.get_secret_value():
            raise SettingsError(
                "DEVPYNODE_AUTH_PRIVATE_KEYS: required when dev mode is off (generated keys are for development)"
            )

    def load_tables(self) -> None:
        from pynode.auth.adapters import sql_api_keys, sql_audit, sql_identities, sql_users  # noqa: F401 - registers the tables

    def cli_commands(self, host: CommandHost) -> dict[str, Callable[..., Any]]:
        from pynode.auth.cli import commands

        return commands(host)

    async def build(self, settings: AuthSettings, infra: Infrastructure) -> ServiceParts:
        from devpynode.auth.v1 import api_keys_pb2_grpc, auth_pb2_grpc

        from pynode.auth import audit
        from pynode.auth.api_keys_servicer import ApiKeyServicer
        from pynode.auth.servicer import AuthServicer, UserAdminServicer
        from pynode.core.tasks import TaskSet

        parts = await build_components(settings, infra)
        background = TaskSet("auth")
        background.every("audit-retention", audit.SWEEP_SECONDS, parts.audit.sweep, "old events removed")

        return ServiceParts(
            registrations=[
                Registration(
                    _AUTH,
                    auth_pb2_grpc.add_AuthServiceServicer_to_server,
                    AuthServicer(parts.service, parts.keyring, parts.oidc),
                ),
                Registration(
                    _ADMIN,
                    auth_pb2_grpc.add_UserAdminServiceServicer_to_server,
                    UserAdminServicer(parts.service, parts.oidc),
                ),
                Registration(
                    _KEYS, api_keys_pb2_grpc.add_ApiKeyServiceServicer_to_server, ApiKeyServicer(parts.api_keys)
                ),
            ],
            closers=[background.close, *([parts.oidc.close] if parts.oidc else [])],
            collectors=[parts.audit.counter],
            authenticator=parts.authenticator,
            component=parts,
        )


MODULE = AuthModule()
