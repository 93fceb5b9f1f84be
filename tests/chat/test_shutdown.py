"""A graceful stop ends every running answer with all its text and the one reason STOPPED, before the AI router's
streams are cut; health says NOT_SERVING while the listener still answers, so probes see it before the port
closes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from devpynode.chat.v1 import chat_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pynode.app import migrate
from pynode.chat.generations import STOPPED
from tests.ai.fakes import FakeProvider
from tests.backends import Backend, unique
from tests.chat.conftest import Member, join
from tests.client import MeshClient
from tests.conftest import make_settings, start_mesh

TOKENS = [f" t{i}" for i in range(100)]  # about 10 s at 0.1 s each: far longer than the grace period
GRACE_SECONDS = 5.0


async def _probe_until_not_serving(port: int) -> list[object]:
    """Health checks, one after another, until NOT_SERVING or until the port refuses them."""
    seen: list[object] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                response = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            except grpc.aio.AioRpcError as error:
                seen.append(error.code())
                return seen
            seen.append(response.status)
            if response.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                return seen
            await asyncio.sleep(0.01)


async def test_stopping_ends_running_answers_with_all_their_text_and_one_reason(
    backend: Backend, tmp_path: Path, ollama: FakeProvider
) -> None:
    if backend.database_url:
        await migrate.upgrade_async(backend.database_url)
    shared = {"redis_prefix": unique("stop-") + ":", "ollama_url": ollama.url, "shutdown_drain_seconds": 1.0}
    mesh = await start_mesh(make_settings(backend, tmp_path, **shared))
    ollama.script.delay = 0.1
    ollama.script.tokens = list(TOKENS)
    stopping: asyncio.Task[None] | None = None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
            (alice,) = await join(channel, mesh, 1)
            conversation = await alice.create()
            call = alice.send_call(conversation.id, "write a lot")
            responses = []
            async for response in call:
                responses.append(response)
                if len(responses) == 6:
                    break
            probing = asyncio.create_task(_probe_until_not_serving(mesh.port))
            await asyncio.sleep(0.05)  # the probes are under way (SERVING) when the stop begins
            stopping = asyncio.create_task(mesh.stop(GRACE_SECONDS))
            probes = await probing
            assert probes[-1] == health_pb2.HealthCheckResponse.NOT_SERVING, probes
            async for response in call:  # the stream ends with the stopped answer, not an error
                responses.append(response)
            await stopping
    finally:
        if stopping is None:
            await mesh.stop(0)

    reply = responses[-1].assistant_message
    streamed = "".join(r.delta.text for r in responses if r.WhichOneof("event") == "delta")
    assert reply.state == chat_pb2.MESSAGE_STATE_FAILED and reply.finish_reason == chat_pb2.FINISH_REASON_ERROR
    assert reply.error == STOPPED
    assert reply.text == streamed and reply.text and "".join(TOKENS).startswith(reply.text)

    # What was stored, as the next process on the same stores reads it: ended, with the same text and reason.
    again = await start_mesh(make_settings(backend, tmp_path, **shared))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{again.port}") as channel:
            member = Member(MeshClient(channel), again, alice.id, alice.email)
            await member.user.login(alice.email)
            stored = next(m for m in await member.messages(conversation.id) if m.id == reply.id)
    finally:
        await again.stop(0)
    assert stored.state == chat_pb2.MESSAGE_STATE_FAILED and stored.error == STOPPED
    assert stored.text == reply.text
