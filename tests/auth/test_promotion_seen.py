"""A promotion made outside the serving process (what `devpynode users create-admin` does) reaches
GetCurrentUser: at once through a shared store and feed (Redis), at the account's next sign-in on the
embedded defaults (the processes share only the database), never only after the profile cache's age
(issue 26 #1)."""

from __future__ import annotations

from pathlib import Path

from devpynode.auth.v1 import auth_pb2

from pynode.app.bootstrap import build
from pynode.auth.module import AuthComponents
from tests.backends import Backend
from tests.client import MeshClient, new_email
from tests.conftest import make_settings, start_mesh


async def test_a_promotion_by_another_process_shows_in_get_current_user(backend: Backend, tmp_path: Path) -> None:
    import grpc

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
        again = client.as_other_address()
        assert (await again.login(email)).user.role == auth_pb2.ROLE_ADMIN
        assert (await again.me()).role == auth_pb2.ROLE_ADMIN
    finally:
        await channel.close()
        await server.stop(0)
