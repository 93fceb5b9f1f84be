"""A promotion made outside the serving process (what `devpynode users create-admin` does) reaches
GetCurrentUser without a restart: at once through a shared store and feed (Redis); on the embedded defaults
(the processes share only the database) within the profile cache's few seconds in the serving process, or at
the account's next sign-in, whichever comes first, never only after the shared level's five minutes (issue 26
#1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from devpynode.auth.v1 import auth_pb2

from pynode.app.bootstrap import build
from pynode.auth.adapters import cached_users
from pynode.auth.module import AuthComponents
from tests.backends import Backend
from tests.client import MeshClient, new_email
from tests.conftest import make_settings, start_mesh


async def test_a_promotion_by_another_process_shows_in_get_current_user(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grpc

    monkeypatch.setattr(cached_users, "NEAR_SECONDS", 0.2)  # the serving process's own level, made short here
    settings = make_settings(backend, tmp_path)
    server = await start_mesh(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        client = MeshClient(channel)
        email = new_email()
        await client.register(email)
        assert (await client.me()).role == auth_pb2.ROLE_USER  # the profile is cached now
        tool = await build(settings)  # the command's own platform, beside the running server
        try:
            parts = tool.component("auth")
            assert isinstance(parts, AuthComponents)
            await parts.service.create_admin(email, None, "ignored")
        finally:
            await tool.close()
        if backend.name != "embedded":  # the command's kv delete and announcement reached the server
            assert (await client.me()).role == auth_pb2.ROLE_ADMIN
        else:  # the same token, no sign-in: the serving process's near level runs out and the database is read
            for _ in range(100):
                if (await client.me()).role == auth_pb2.ROLE_ADMIN:
                    break
                await asyncio.sleep(0.05)
            assert (await client.me()).role == auth_pb2.ROLE_ADMIN
        again = client.as_other_address()
        assert (await again.login(email)).user.role == auth_pb2.ROLE_ADMIN
        assert (await again.me()).role == auth_pb2.ROLE_ADMIN
    finally:
        await channel.close()
        await server.stop(0)
