"""PostgreSQL going away under load and coming back, through a TCP proxy the test cuts and restores (the shared
server itself is never stopped). The proxy is faithful to the wire: it only drops connections and refuses new
ones. While the database is away calls are UNAVAILABLE (never INTERNAL or UNKNOWN); afterwards the mesh answers
again without a restart, and everything acknowledged before the cut is still there."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from devpynode.chat.v1 import chat_pb2, chat_pb2_grpc

from tests.backends import Backend
from tests.client import MeshClient
from tests.conftest import make_settings, start_mesh


class Proxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL; `cut` drops every connection and refuses new ones."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.open = True
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()
        self.writers.discard(writer)

    def cut(self) -> None:
        self.open = False
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    def restore(self) -> None:
        self.open = True

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def proxy(backend: Backend) -> AsyncIterator[Proxy]:
    if not backend.database_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL fault")
    found = Proxy(int(backend.database_url.rsplit(":", 1)[1].split("/")[0]))
    await found.start()
    yield found
    await found.stop()


async def test_a_database_cut_under_load_is_unavailable_and_heals_keeping_what_was_acknowledged(
    backend: Backend, proxy: Proxy, tmp_path: Path
) -> None:
    host_port = backend.database_url.split("@", 1)[1].split("/", 1)[0]
    proxied = backend.database_url.replace(host_port, f"127.0.0.1:{proxy.port}")
    mesh = await start_mesh(
        make_settings(
            backend, tmp_path, database_url=proxied, chat_conversations_per_minute=0, database_pool_timeout_seconds=2
        )
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
            user = MeshClient(channel)
            await user.register()
            chat = chat_pb2_grpc.ChatServiceStub(channel)
            acknowledged: list[str] = []
            codes: list[grpc.StatusCode] = []

            async def create() -> None:
                try:
                    made = await chat.CreateConversation(
                        chat_pb2.CreateConversationRequest(title="kept", model="builtin/echo"),
                        metadata=user.md(),
                        timeout=20,
                    )
                    acknowledged.append(made.conversation.id)
                    codes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as error:
                    codes.append(error.code())

            await asyncio.gather(*(create() for _ in range(10)))  # a mixed load before, during and after
            during = [asyncio.create_task(create()) for _ in range(10)]
            proxy.cut()
            await asyncio.gather(*(create() for _ in range(10)), *during)
            assert grpc.StatusCode.UNAVAILABLE in codes
            assert not {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED} & set(
                codes
            )

            proxy.restore()
            for _ in range(3):  # the pool's dead connections are found and replaced: healthy at once after
                await create()
            assert codes[-1] == grpc.StatusCode.OK, codes[-3:]
            listed = await chat.ListConversations(chat_pb2.ListConversationsRequest(page_size=100), metadata=user.md())
            assert set(acknowledged) <= {c.id for c in listed.conversations}
    finally:
        await mesh.stop(0)
