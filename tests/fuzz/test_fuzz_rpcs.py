"""Every RPC the mesh registers, fuzzed from its descriptor, on both backend sets.

Each case is one call: a message generated from the request type's descriptor (strategies per field type and
rule, see strategies.py) or raw malformed bytes, sent with the fuzzing user's token, a forged one or none; unary,
server-streaming (read a little, then cancel) or client-streaming (a few messages). Whatever comes back, the
status is never INTERNAL or UNKNOWN and the call ends within its deadline (DEADLINE_EXCEEDED is a hang). The
process's memory does not grow between the second quarter of the run and its end.

Two seeds per run: a fixed one (0) and a rotating one (today's date, or DEVPYNODE_FUZZ_SEED); both are in the test
ids, and hypothesis prints the failing example (shrunk) with the exact call. DEVPYNODE_FUZZ_SCALE multiplies the
number of cases (1 by default: 10,400 per run over both backends).
"""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from devpynode.chat.v1 import chat_pb2, chat_pb2_grpc
from devpynode.files.v1 import files_pb2, files_pb2_grpc
from google.protobuf import descriptor as _descriptor
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from pynode.app.server import MeshServer
from tests.backends import Backend
from tests.client import MeshClient
from tests.conftest import make_settings, start_mesh
from tests.fuzz import strategies

FIXED_SEED = 0
ROTATING_SEED = int(os.environ.get("DEVPYNODE_FUZZ_SEED") or datetime.date.today().strftime("%Y%m%d"))
SCALE = float(os.environ.get("DEVPYNODE_FUZZ_SCALE", "1"))
# Cases per (backend, seed): structured messages and raw bytes. 4 x (2,000 + 600) = 10,400 per run.
STRUCTURED = max(1, int(2000 * SCALE))
RAW = max(1, int(600 * SCALE))
CALL_SECONDS = 10.0  # a call still running after this is a hang
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}
MEMORY_GROWTH_LIMIT = 96 * 2**20

# Limits wide open, so the fuzzer reaches the services' code rather than the rate limiters (those still fire
# now and then: RESOURCE_EXHAUSTED is a fine answer).
GENEROUS = {
    "rate_limit_per_minute": 1_000_000,
    "account_flood_failures": 1_000_000,
    "chat_messages_per_minute": 0,
    "chat_conversations_per_minute": 0,
    "chat_invites_per_minute": 0,
    "chat_reactions_per_minute": 0,
    "chat_streams_per_user": 0,
    "ai_requests_per_minute": 0,
    "ai_streams_per_user": 0,
    "ai_builtin_tokens_per_second": 0,
}
SEEDS = [pytest.param(FIXED_SEED, id=f"seed-{FIXED_SEED}"), pytest.param(ROTATING_SEED, id=f"seed-{ROTATING_SEED}")]


@dataclass(frozen=True)
class Rpc:
    """One registered method, as the fuzzer calls it."""

    path: str
    request: _descriptor.Descriptor
    client_streaming: bool
    server_streaming: bool


@dataclass
class Target:
    """A mesh of the fuzzer's own, its user, the ids that user owns, and its methods."""

    mesh: MeshServer
    client: MeshClient
    loop: asyncio.AbstractEventLoop
    rpcs: list[Rpc]
    ids: list[str]


def registered_rpcs(mesh: MeshServer) -> list[Rpc]:
    """Every method of every service the mesh registered, from the descriptors it registered them with."""
    rpcs = []
    for registration in mesh.platform.registrations:
        service = registration.descriptor
        for method in service.methods:
            rpcs.append(
                Rpc(
                    f"/{service.full_name}/{method.name}",
                    method.input_type,
                    method.client_streaming,
                    method.server_streaming,
                )
            )
    return rpcs


@pytest.fixture(scope="module")
async def target(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    mesh = await start_mesh(make_settings(backend, tmp_path_factory.mktemp(f"fuzz-{backend.name}"), **GENEROUS))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}")
    client = MeshClient(channel)
    await client.register()
    me = await client.me()
    chat = chat_pb2_grpc.ChatServiceStub(channel)
    conversation = await chat.CreateConversation(
        chat_pb2.CreateConversationRequest(title="fuzz", model="builtin/echo"), metadata=client.md()
    )
    files = files_pb2_grpc.FileServiceStub(channel)
    uploaded = await files.UploadFile(
        iter(
            [
                files_pb2.UploadFileRequest(
                    metadata=files_pb2.FileMetadata(filename="fuzz.txt", content_type="text/plain")
                ),
                files_pb2.UploadFileRequest(chunk=b"fuzz me\n"),
            ]
        ),
        metadata=client.md(),
    )
    ids = [me.id, conversation.conversation.id, uploaded.file.id]
    yield Target(mesh, client, asyncio.get_running_loop(), registered_rpcs(mesh), ids)
    await channel.close()
    await mesh.stop(0)


def _metadata(client: MeshClient, credential: str) -> list[tuple[str, str]]:
    token = {"user": client.token, "none": "", "forged": client.token[:-6] + "AAAAAA", "junk": "not.a.jwt"}
    return client.md(token[credential])


async def _call(target: Target, rpc: Rpc, payloads: list[bytes], credential: str) -> grpc.StatusCode:
    """One call; its final status (OK included). Server streams are read a little, then cancelled."""
    channel = target.client.channel
    metadata = _metadata(target.client, credential)
    try:
        if rpc.client_streaming and rpc.server_streaming:
            raise AssertionError(f"{rpc.path}: bidirectional methods need a driver of their own")
        if rpc.client_streaming:
            await channel.stream_unary(rpc.path)(iter(payloads), timeout=CALL_SECONDS, metadata=metadata)
        elif rpc.server_streaming:
            call = channel.unary_stream(rpc.path)(payloads[0], timeout=CALL_SECONDS, metadata=metadata)
            # One message, then cancel: StreamEvents stays open by design after its first (ready) event.
            async for _ in call:
                call.cancel()
                return grpc.StatusCode.OK
        else:
            await channel.unary_unary(rpc.path)(payloads[0], timeout=CALL_SECONDS, metadata=metadata)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _run(target: Target, rpc: Rpc, payloads: list[bytes], credential: str) -> None:
    """Called from hypothesis's thread: runs the call on the mesh's loop and checks its outcome."""
    future = asyncio.run_coroutine_threadsafe(_call(target, rpc, payloads, credential), target.loop)
    code = future.result(CALL_SECONDS * 3)
    assert code not in NEVER, f"{rpc.path} ({credential}) answered {code.name}"


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Memory:
    """RSS once a quarter of the cases ran (caches warm) and at the end."""

    def __init__(self, total: int) -> None:
        self.total, self.count, self.warm = total, 0, 0

    def tick(self) -> None:
        self.count += 1
        if self.count == max(1, self.total // 4):
            self.warm = _rss()

    def check(self) -> None:
        grown = _rss() - self.warm
        assert grown < MEMORY_GROWTH_LIMIT, f"RSS grew by {grown / 2**20:.0f} MiB over the last 3/4 of the cases"


def _structured(target: Target) -> st.SearchStrategy[tuple[Rpc, list[bytes]]]:
    built: dict[str, st.SearchStrategy[tuple[Rpc, list[bytes]]]] = {}  # one per method, reused by every draw

    def payloads(rpc: Rpc) -> st.SearchStrategy[tuple[Rpc, list[bytes]]]:
        if rpc.path not in built:
            one = strategies.message(rpc.request, target.ids).map(lambda m: m.SerializeToString())
            many = st.lists(one, min_size=1, max_size=4) if rpc.client_streaming else one.map(lambda b: [b])
            built[rpc.path] = many.map(lambda p: (rpc, p))
        return built[rpc.path]

    return st.sampled_from(target.rpcs).flatmap(payloads)


def _raw(target: Target) -> st.SearchStrategy[tuple[Rpc, list[bytes]]]:
    return st.tuples(st.sampled_from(target.rpcs), st.lists(strategies.malformed(), min_size=1, max_size=3))


CREDENTIALS = st.sampled_from(["user", "user", "user", "none", "forged", "junk"])


def _fuzz(target: Target, cases: st.SearchStrategy[tuple[Rpc, list[bytes]]], count: int, at: int) -> None:
    memory = Memory(count)

    @seed(at)
    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(case=cases, credential=CREDENTIALS)
    def fuzz(case: tuple[Rpc, list[bytes]], credential: str) -> None:
        memory.tick()
        rpc, payloads = case
        _run(target, rpc, payloads, credential)

    fuzz()
    memory.check()


def test_every_registered_method_is_fuzzed(target: Target) -> None:
    paths = {r.path for r in target.rpcs}
    assert len(paths) >= 40 and "/devpynode.files.v1.FileService/UploadFile" in paths, sorted(paths)


@pytest.mark.parametrize("at", SEEDS)
async def test_generated_messages_never_internal_unknown_or_hang(target: Target, at: int) -> None:
    await asyncio.to_thread(_fuzz, target, _structured(target), STRUCTURED, at)


@pytest.mark.parametrize("at", SEEDS)
async def test_malformed_bytes_never_internal_unknown_or_hang(target: Target, at: int) -> None:
    await asyncio.to_thread(_fuzz, target, _raw(target), RAW, at)
