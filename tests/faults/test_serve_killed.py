"""`devpynode serve` stopped mid-upload (SIGTERM) or killed (kill -9), then started again on the same data dir and
stores: every acknowledged byte and file is kept, an upload that was not acknowledged leaves no file visible, and
a resumable upload session continues where its last acknowledged part ended."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from devpynode.files.v1 import files_pb2, files_pb2_grpc

from pynode.app import migrate
from tests.backends import Backend, unique
from tests.client import MeshClient, new_email

PART = b"acknowledged part\n" * 100


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(backend: Backend, data_dir: Path, port: int, prefix: str, bucket: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DEVPYNODE_DATA_DIR": str(data_dir),
        "DEVPYNODE_GRPC_PORT": str(port),
        "DEVPYNODE_METRICS_PORT": "-1",
        "DEVPYNODE_HTTP_PORT": "-1",
        "DEVPYNODE_DATABASE_URL": backend.database_url,
        "DEVPYNODE_REDIS_URL": backend.redis_url,
        "DEVPYNODE_REDIS_PREFIX": prefix,
        "DEVPYNODE_BCRYPT_COST": "4",
        "DEVPYNODE_SHUTDOWN_GRACE_SECONDS": "1",
        "DEVPYNODE_SHUTDOWN_DRAIN_SECONDS": "0",
    }
    if backend.s3_endpoint:
        env.update(
            DEVPYNODE_STORAGE_URL=f"s3://{bucket}",
            DEVPYNODE_S3_ENDPOINT_URL=backend.s3_endpoint,
            DEVPYNODE_S3_ACCESS_KEY="devpynode-test",
            DEVPYNODE_S3_SECRET_KEY="devpynode-test-secret",
        )
    return env


class Served:
    """One `devpynode serve` process and a channel to it."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env, self.port = env, port
        self.process: asyncio.subprocess.Process | None = None
        self.channel: grpc.aio.Channel | None = None

    async def start(self) -> grpc.aio.Channel:
        if self.channel is not None:
            await self.channel.close()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pynode.app.cli", "serve", env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        await asyncio.wait_for(self.channel.channel_ready(), 30)
        return self.channel

    async def stop(self, sig: signal.Signals) -> None:
        assert self.process is not None and self.channel is not None
        self.process.send_signal(sig)
        await asyncio.wait_for(self.process.wait(), 30)
        # The channel stays open: closing it here would cancel the calls in flight on the client's side before
        # they could report what the server's going did to them (the test awaits one of them next).

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@pytest.fixture
async def served(backend: Backend, tmp_path: Path) -> AsyncIterator[Served]:
    if backend.database_url:
        await migrate.upgrade_async(backend.database_url)
    port = _free_port()
    server = Served(_env(backend, tmp_path, port, unique("killed-") + ":", unique("devpynode-test-")), port)
    yield server
    await server.close()


async def _stalled_upload(files: files_pb2_grpc.FileServiceStub, md: list[tuple[str, str]]) -> grpc.aio.Call:
    """An UploadFile that sent its metadata and one chunk, then waits for ever: in flight when the server goes."""
    stall = asyncio.Event()

    async def parts() -> AsyncIterator[files_pb2.UploadFileRequest]:
        meta = files_pb2.FileMetadata(filename="half.txt", content_type="text/plain")
        yield files_pb2.UploadFileRequest(metadata=meta)
        yield files_pb2.UploadFileRequest(chunk=b"never acknowledged\n" * 100)
        await stall.wait()

    call = files.UploadFile(parts(), metadata=md)
    await asyncio.sleep(0.3)  # the chunk reaches the server (no acknowledgement to wait on: that is the point)
    return call


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
async def test_acknowledged_uploads_survive_and_sessions_resume_after_the_server_goes(
    served: Served, sig: signal.Signals
) -> None:
    channel = await served.start()
    user = MeshClient(channel)
    email = new_email()
    await user.register(email)
    files = files_pb2_grpc.FileServiceStub(channel)
    meta = files_pb2.FileMetadata(filename="whole.txt", content_type="text/plain")
    whole = await files.UploadFile(
        iter([files_pb2.UploadFileRequest(metadata=meta), files_pb2.UploadFileRequest(chunk=PART)]),
        metadata=user.md(),
    )
    session = (
        await files.CreateUploadSession(
            files_pb2.CreateUploadSessionRequest(
                metadata=files_pb2.FileMetadata(filename="resumed.txt", content_type="text/plain")
            ),
            metadata=user.md(),
        )
    ).session
    await files.UploadPart(files_pb2.UploadPartRequest(session_id=session.id, offset=0, data=PART), metadata=user.md())
    in_flight = await _stalled_upload(files, user.md())

    await served.stop(sig)
    with pytest.raises(grpc.aio.AioRpcError) as cut:
        await in_flight
    assert cut.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), cut.value

    channel = await served.start()
    again = MeshClient(channel)
    await again.login(email)
    files = files_pb2_grpc.FileServiceStub(channel)
    kept = await files.GetUploadSession(files_pb2.GetUploadSessionRequest(session_id=session.id), metadata=again.md())
    assert kept.session.received_bytes == len(PART)
    await files.UploadPart(
        files_pb2.UploadPartRequest(session_id=session.id, offset=len(PART), data=PART), metadata=again.md()
    )
    resumed = await files.CompleteUploadSession(
        files_pb2.CompleteUploadSessionRequest(session_id=session.id), metadata=again.md()
    )

    async def read(file_id: str) -> bytes:
        out = b""
        async for piece in files.DownloadFile(files_pb2.DownloadFileRequest(file_id=file_id), metadata=again.md()):
            out += piece.chunk
        return out

    assert await read(whole.file.id) == PART
    assert await read(resumed.file.id) == PART + PART
    listed = await files.ListFiles(files_pb2.ListFilesRequest(), metadata=again.md())
    assert sorted(f.filename for f in listed.files) == ["resumed.txt", "whole.txt"], "no half file is visible"
