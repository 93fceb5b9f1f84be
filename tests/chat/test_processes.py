"""Generations across processes: a killed writer's answer ends failed; two chat processes share events."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import grpc
from devpynode.chat.v1 import chat_pb2

from pynode.app import migrate
from tests.ai.fakes import FakeProvider
from tests.backends import Backend, unique
from tests.chat.conftest import ANSWER, Member, Subscriber, join, reply_text
from tests.client import MeshClient, eventually, fails
from tests.conftest import make_settings, start_mesh


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _serving(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)


async def test_an_answer_whose_writer_was_killed_ends_failed_with_its_text(
    backend: Backend, tmp_path: Path, ollama: FakeProvider
) -> None:
    prefix = unique("kill-") + ":"
    if backend.database_url:
        await migrate.upgrade_async(backend.database_url)
    port = _free_port()
    env = {
        **os.environ,
        "DEVPYNODE_DATA_DIR": str(tmp_path),
        "DEVPYNODE_GRPC_PORT": str(port),
        "DEVPYNODE_METRICS_PORT": "-1",
        "DEVPYNODE_HTTP_PORT": "-1",
        "DEVPYNODE_DATABASE_URL": backend.database_url,
        "DEVPYNODE_REDIS_URL": backend.redis_url,
        "DEVPYNODE_REDIS_PREFIX": prefix,
        "DEVPYNODE_OLLAMA_URL": ollama.url,
        "DEVPYNODE_BCRYPT_COST": "4",
        "DEVPYNODE_CHAT_LEASE_SECONDS": "0.9",
    }
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pynode.app.cli", "serve", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await _serving(port)
        ollama.script.delay = 0.1
        ollama.script.tokens = [f" t{i}" for i in range(100)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            (alice,) = await join(channel, None, 1)  # type: ignore[arg-type]
            conversation = await alice.create()
            call = alice.send_call(conversation.id, "write a lot")
            seen = []
            async for response in call:
                seen.append(response)
                if len(seen) == 8:
                    break
            reply_id = seen[1].delta.message_id
            await asyncio.sleep(0.6)  # past a lease renewal, which saves the text so far
            writer.send_signal(signal.SIGKILL)
            await writer.wait()
            call.cancel()
    finally:
        if writer.returncode is None:
            writer.kill()
            await writer.wait()

    # Another chat process on the same stores sweeps the lost answer into `failed`, keeping its text.
    survivor = await start_mesh(
        make_settings(backend, tmp_path, redis_prefix=prefix, ollama_url=ollama.url, chat_lease_seconds=0.9)
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{survivor.port}") as channel:
            again = Member(MeshClient(channel), survivor, alice.id, alice.email)
            await again.user.login(alice.email)

            async def ended() -> chat_pb2.Message:
                while True:
                    found = [m for m in await again.messages(conversation.id) if m.id == reply_id]
                    if found[0].state != chat_pb2.MESSAGE_STATE_STREAMING:
                        return found[0]
                    await asyncio.sleep(0.1)

            reply = await asyncio.wait_for(ended(), 10)
            assert reply.state == chat_pb2.MESSAGE_STATE_FAILED and reply.finish_reason == chat_pb2.FINISH_REASON_ERROR
            assert "stopped" in reply.error
            assert reply.text and "".join(ollama.script.tokens).startswith(reply.text)
    finally:
        await survivor.stop(0)


async def test_two_chat_processes_share_events_and_cancellations(
    real_backend: Backend, tmp_path: Path, ollama: FakeProvider
) -> None:
    shared = {"redis_prefix": unique("pair-") + ":", "ollama_url": ollama.url}
    first = await start_mesh(make_settings(real_backend, tmp_path / "a", **shared))
    second = await start_mesh(make_settings(real_backend, tmp_path / "b", **shared))
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as a,
            grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as b,
        ):
            (alice,) = await join(a, first, 1)
            bob = Member(MeshClient(b), second)
            registered = await bob.user.register()
            bob.id, bob.email = registered.user.id, registered.user.email
            conversation = await alice.create()
            await alice.invite(conversation.id, bob)
            watching = Subscriber(bob, conversation.id)  # on the other process
            await watching.ready()
            sent = await alice.send(conversation.id, "across processes")
            await eventually(lambda: watching.final(sent.reply.id) is not None, 10)
            text, seqs = reply_text(watching.events, sent.reply.id)
            assert text == ANSWER and seqs == list(range(len(seqs)))

            # Bob, on the second process, cancels an answer the first process is writing.
            ollama.script.delay = 0.2
            call = alice.send_call(conversation.id, "slow")
            started = [r async for r in _take(call, 2)]
            reply_id = started[1].delta.message_id
            cancelled = await bob.stub.CancelGeneration(
                chat_pb2.CancelGenerationRequest(conversation_id=conversation.id, message_id=reply_id),
                metadata=bob.md,
            )
            assert cancelled.message.state == chat_pb2.MESSAGE_STATE_CANCELLED and cancelled.message.text
            await eventually(lambda: watching.final(reply_id) is not None, 10)
            call.cancel()
            await watching.stop()

            # SendMessage checks membership against a per-process cache: a removal made through the first
            # process is seen by the second at its very next call.
            ollama.script.delay = 0
            await bob.send(conversation.id, "still here")  # the second process now holds the conversation

            # The prompt's newest history is cached per process too: an exchange stored through the first
            # process is in the second's very next prompt.
            await alice.send(conversation.id, "said on the first")
            await bob.send(conversation.id, "and on the second")
            body = ollama.chats[-1].body
            assert body is not None
            contents = [m["content"] for m in body["messages"]]
            assert contents[-3:] == ["said on the first", ANSWER, "and on the second"], contents
            await alice.stub.RemoveMember(
                chat_pb2.RemoveMemberRequest(conversation_id=conversation.id, user_id=bob.id), metadata=alice.md
            )
            refused = await fails(bob.send(conversation.id, "gone?"))
            assert refused.code == grpc.StatusCode.NOT_FOUND
    finally:
        await second.stop(0)
        await first.stop(0)


async def _take(call: object, count: int) -> object:
    taken = 0
    async for item in call:  # type: ignore[attr-defined]
        yield item
        taken += 1
        if taken == count:
            return
