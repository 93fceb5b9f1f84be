"""Builds single sign-on from settings: one HTTP client, one OidcProvider per configured provider, each
provider's discovery tried once at start (a misconfigured or unreachable provider is one log line, not a failed
start: the others keep working, and it is retried at the next sign-in)."""

from __future__ import annotations

import asyncio
import logging

import httpx

from pynode.auth.adapters.sql_identities import SqlIdentityRepository
from pynode.auth.oidc.config import OidcProviderConfig
from pynode.auth.oidc.flows import FlowStore
from pynode.auth.oidc.provider import HTTP_BUDGET_SECONDS, OidcProvider
from pynode.auth.oidc.service import OidcService
from pynode.auth.service import AuthService
from pynode.auth.settings import AuthSettings
from pynode.core.errors import DomainError
from pynode.core.module import Infrastructure

log = logging.getLogger("pynode.auth.oidc")
START_CHECK_SECONDS = 5.0


async def build_oidc(
    auth: AuthService, configs: tuple[OidcProviderConfig, ...], settings: AuthSettings, infra: Infrastructure
) -> OidcService:
    """The SSO service over `auth`'s accounts and sessions."""
    # No redirects followed (a provider's endpoint that redirects is misconfigured) and no proxies from the
    # environment: the relying party talks to the configured URLs only.
    http = httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=HTTP_BUDGET_SECONDS)
    providers = {c.id: OidcProvider(c, http) for c in configs}
    await asyncio.gather(*(_check(p) for p in providers.values()))
    service = OidcService(
        auth, providers, SqlIdentityRepository(infra.db), FlowStore(infra.kv), settings.auth_oidc_web_redirect_url
    )
    service.closers.append(http.aclose)
    return service


async def _check(provider: OidcProvider) -> None:
    try:
        async with asyncio.timeout(START_CHECK_SECONDS):
            meta = await provider.metadata()
    except (DomainError, TimeoutError):
        # _discover logged the cause; this is the line an operator looks for.
        log.error(
            "OIDC provider %s (%s) is not usable yet: discovery failed; sign-ins through it answer UNAVAILABLE",
            provider.config.id,
            provider.config.issuer,
        )
        return
    log.info(
        "OIDC provider %s ready (device flow %s)",
        provider.config.id,
        "on" if meta.device_authorization_endpoint and provider.config.cli_client_id else "off",
    )
