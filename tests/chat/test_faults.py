"""Answers through a short outage of the event store: a private Redis is stopped mid-answer for a few seconds and
started again on the same port; the answer completes with all its text, and nothing is left unretrieved."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from devpynode.chat.v1 import chat_pb2

from pynode.chat.recent import RecentMessages
from pynode.core.errors import Unavailable
from tests.ai.fakes import FakeProvider
from tests.backends import Backend, reachable
from tests.chat.conftest import join
from tests.chat.test_recent_cache import CountingRepo, _exchange
from tests.conftest import make_settings, start_mesh

OUTAGE_SECONDS = 3.0


class PrivateRedis:
    """A redis-server of this test's own, which it may stop and start again on the same port (same data)."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [*command, "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(500):
            if reachable("127.0.0.1", self.port):
                return
            assert self.process.poll() is None, "redis-server did not start"
            subprocess.run(["sleep", "0.01"], check=True)
        raise AssertionError("redis-server did not listen")

    def stop(self) -> None:
        """SHUTDOWN SAVE: the keys (sign-in sessions) come back with the next start, as a restarted Redis's would."""
        client = redis.Redis(port=self.port)
        with contextlib.suppress(redis.ConnectionError):  # the server closes the connection as it exits
            client.shutdown(save=True)
        client.close()
        if self.process is not None:
            self.process.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.process.kill()
        server.process.wait(10)


@pytest.fixture
async def unretrieved() -> AsyncIterator[list[dict[str, Any]]]:
    """What the loop's exception handler is given ("Task exception was never retrieved" and the like)."""
    loop = asyncio.get_running_loop()
    found: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: found.append(context))
    yield found
    loop.set_exception_handler(previous)


async def test_an_answer_survives_a_short_outage_of_the_event_store(
    private_redis: PrivateRedis,
    tmp_path: Path,
    ollama: FakeProvider,
    unretrieved: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    backend = Backend("private-redis", "", private_redis.url, "faults:")
    mesh = await start_mesh(make_settings(backend, tmp_path / "mesh", ollama_url=ollama.url))
    ollama.script.delay = 0.1
    ollama.script.tokens = [f" t{i}" for i in range(60)]  # about 6 s: the outage falls in the middle
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
            (alice,) = await join(channel, mesh, 1)
            conversation = await alice.create()
            call = alice.send_call(conversation.id, "write through an outage")
            responses = []
            async for response in call:
                responses.append(response)
                if len(responses) == 4:  # the user's message and three deltas
                    break
            await asyncio.to_thread(private_redis.stop)
            await asyncio.sleep(OUTAGE_SECONDS)
            await asyncio.to_thread(private_redis.start)
            async for response in call:
                responses.append(response)

            reply = responses[-1].assistant_message
            assert reply.state == chat_pb2.MESSAGE_STATE_COMPLETE, reply.error
            assert reply.text == "".join(ollama.script.tokens)
            assert "".join(r.delta.text for r in responses if r.WhichOneof("event") == "delta") == reply.text
            stored = [m for m in await alice.messages(conversation.id) if m.id == reply.id]
            assert stored[0].state == chat_pb2.MESSAGE_STATE_COMPLETE and stored[0].text == reply.text
    finally:
        await mesh.stop(0)
    gc.collect()  # an exception nobody retrieved is reported when its task is collected
    await asyncio.sleep(0)
    assert not unretrieved, unretrieved
    assert "never retrieved" not in caplog.text


class DownStore:
    """A key-value store whose server is down."""

    async def get(self, key: str) -> str | None:
        raise Unavailable("the session store is unreachable; retry shortly", retry_after=1.0)


async def test_the_newest_messages_come_from_the_database_while_the_store_is_down() -> None:
    repo = CountingRepo()
    conversation = uuid.uuid4()
    asked, reply = _exchange(conversation, "hello")
    repo.store(asked, reply)
    cache = RecentMessages(repo, DownStore())  # type: ignore[arg-type]
    assert [m.id for m in await cache.newest(conversation)] == [reply.id, asked.id]
    assert [m.id for m in await cache.newest(conversation)] == [reply.id, asked.id]
    assert repo.reads == 2  # nothing kept without a version to trust it by
