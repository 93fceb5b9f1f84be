"""The embedded defaults keep sign-ins across a restart: memory:// keeps its keys in the data dir's kv.sqlite too
(unless DEVPYNODE_MEMORY_KV_IN_DATA_DIR=false), so old access and refresh tokens still work after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
from devpynode.auth.v1 import auth_pb2

from pynode.core.adapters.sqlite_kv import SqliteKeyValueStore
from tests.backends import Backend
from tests.client import MeshClient, fails
from tests.conftest import make_settings, start_mesh

EMBEDDED = Backend("embedded", "", "memory://", "t:")


async def _mesh(data_dir: Path, **overrides: Any) -> tuple[Any, grpc.aio.Channel]:
    # One prefix for both runs: the test settings give every mesh a fresh one otherwise.
    server = await start_mesh(make_settings(EMBEDDED, data_dir, redis_prefix="restart:", **overrides))
    return server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")


async def _signed_in_then_restarted(tmp_path: Path, **overrides: Any) -> tuple[auth_pb2.TokenPair, MeshClient, Any]:
    server, channel = await _mesh(tmp_path, **overrides)
    client = MeshClient(channel)
    tokens = (await client.register()).tokens
    await channel.close()
    await server.stop(0)
    server, channel = await _mesh(tmp_path, **overrides)
    return tokens, MeshClient(channel, client.address), (server, channel)


async def test_tokens_survive_a_restart_on_the_same_data_dir(tmp_path: Path) -> None:
    tokens, client, (server, channel) = await _signed_in_then_restarted(tmp_path)
    try:
        assert (await client.me(tokens.access_token)).email
        refreshed = await client.auth.RefreshToken(
            auth_pb2.RefreshTokenRequest(refresh_token=tokens.refresh_token), metadata=client.md("")
        )
        assert refreshed.tokens.access_token
        assert (await client.me(refreshed.tokens.access_token)).email
    finally:
        await channel.close()
        await server.stop(0)


async def test_the_operator_may_keep_them_in_memory_only(tmp_path: Path) -> None:
    tokens, client, (server, channel) = await _signed_in_then_restarted(tmp_path, memory_kv_in_data_dir=False)
    try:
        error = await fails(
            client.auth.RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token=tokens.refresh_token), metadata=client.md("")
            )
        )
        assert error.code == grpc.StatusCode.UNAUTHENTICATED
        assert not (tmp_path / "kv.sqlite").exists()
    finally:
        await channel.close()
        await server.stop(0)


async def test_the_file_keeps_values_sets_deletions_and_expiry(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    store = SqliteKeyValueStore(path, "p:")
    await store.set("kept", "1")
    await store.set("brief", "1", ttl_seconds=0.05)
    await store.set("long", "1", ttl_seconds=3600)
    await store.set("gone", "1")
    await store.delete("gone")
    await store.set_add("members", "a", 3600)
    await store.set_add("members", "b")
    await store.set_remove("members", "a")
    assert await store.incr("count", 3600) == (1, 3600)
    assert await store.compare_and_set("swapped", None, "new")
    await store.close()
    other = SqliteKeyValueStore(path, "other:")  # another prefix's keys are not this store's
    assert await other.get("kept") is None
    await other.close()
    await asyncio.sleep(0.06)

    again = SqliteKeyValueStore(path, "p:")
    try:
        assert await again.get("kept") == "1"
        assert await again.get("brief") is None  # expired while the process was down
        assert 3500 < await again.ttl("long") <= 3600
        assert await again.get("gone") is None
        assert await again.set_members("members") == {"b"}
        assert await again.get("count") == "1"
        assert await again.get("swapped") == "new"
    finally:
        await again.close()
