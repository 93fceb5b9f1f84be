"""Single sign-on fixtures: a mesh pointed at the real test provider, and a client that signs in through it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from devpynode.auth.v1 import auth_pb2

from pynode.app.server import MeshServer
from tests.backends import Backend
from tests.client import MeshClient
from tests.conftest import make_settings, start_mesh
from tests.oidcprovider import Browser, Provider

ADMIN_GROUP = "platform-admins"


def provider_entries(provider: Provider) -> list[dict[str, Any]]:
    """The providers the SSO mesh knows: one issuer, several policies."""
    roles = {"group_roles": {ADMIN_GROUP: "admin", "staff": "user"}, "groups_claim": "groups"}
    return [
        provider.settings("corp", **roles),
        provider.settings("autolink", auto_link_verified_email=True),
        provider.settings("closed", allow_signup=False),
        provider.settings("domain", allowed_email_domains=["corp.example"]),
        # The same provider seen through a client that is not ours: its codes must not work for us.
        provider.settings("ungrouped"),
    ]


def sso_settings(backend: Backend, data_dir: Path, provider: Provider, **overrides: Any) -> Any:
    return make_settings(
        backend,
        data_dir,
        auth_oidc_providers=json.dumps(provider_entries(provider)),
        auth_oidc_web_redirect_url="http://localhost:8080/oidc/callback",
        **overrides,
    )


@pytest.fixture(scope="session")
async def sso_mesh(
    backend: Backend, oidc_provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MeshServer]:
    """The whole mesh on one backend with the test provider configured."""
    server = await start_mesh(sso_settings(backend, tmp_path_factory.mktemp(f"sso-{backend.name}"), oidc_provider))
    yield server
    await server.stop(0)


class SsoClient(MeshClient):
    """A mesh client that can also sign in through the provider, as the web app or the CLI does."""

    def __init__(self, channel: grpc.aio.Channel, issuer: str) -> None:
        super().__init__(channel)
        self.issuer = issuer

    def as_other_address_sso(self) -> SsoClient:
        return SsoClient(self.channel, self.issuer)

    async def start(
        self, provider: str = "corp", *, secret: bytes | None = None, link: bool = False, port: int = 0
    ) -> tuple[auth_pb2.StartOidcLoginResponse, bytes]:
        """Start a flow (web, or CLI loopback with `port`); returns it and the binding secret."""
        secret = secret or os.urandom(32)
        request = auth_pb2.StartOidcLoginRequest(
            provider=provider,
            client=auth_pb2.OIDC_CLIENT_KIND_CLI_LOOPBACK if port else auth_pb2.OIDC_CLIENT_KIND_WEB,
            loopback_port=port,
            binding_sha256=hashlib.sha256(secret).digest(),
        )
        if link:
            linked = await self.auth.StartOidcLink(auth_pb2.StartOidcLinkRequest(flow=request), metadata=self.md())
            return linked.flow, secret
        return await self.auth.StartOidcLogin(request, metadata=self.md("")), secret

    async def provider_answer(self, flow: auth_pb2.StartOidcLoginResponse, account: str) -> str:
        """The query the provider redirects back with once `account` signed in (in a fresh browser)."""
        browser = Browser(self.issuer)
        try:
            return await asyncio.to_thread(browser.sign_in, flow.authorization_url, account)
        finally:
            browser.close()

    async def complete(self, query: str, secret: bytes) -> auth_pb2.CompleteOidcLoginResponse:
        response: auth_pb2.CompleteOidcLoginResponse = await self.auth.CompleteOidcLogin(
            auth_pb2.CompleteOidcLoginRequest(callback_query=query, binding=secret), metadata=self.md("")
        )
        self.token = response.tokens.access_token
        return response

    async def sso(self, account: str, provider: str = "corp") -> auth_pb2.CompleteOidcLoginResponse:
        """A whole web sign-in as `account`."""
        flow, secret = await self.start(provider)
        return await self.complete(await self.provider_answer(flow, account), secret)


@pytest.fixture
async def sso(sso_mesh: MeshServer, oidc_provider: Provider) -> AsyncIterator[SsoClient]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{sso_mesh.port}")
    yield SsoClient(channel, oidc_provider.issuer)
    await channel.close()
