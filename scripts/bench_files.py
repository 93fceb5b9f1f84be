"""File service benchmarks (issues 8 and 25), used by scripts/bench (scenarios `files` and `files-s3`).

- a 1 GiB upload over gRPC to the local backend, against its parts measured in the same run: a bare grpcio
  client-streaming upload of the same messages to a sink, SHA-256 of the bytes, a plain 1 GiB write with fsync
  to the same disk (its CPU is the page-cache copy). Targets (issue 25): the server's CPU per MiB at most 1.2x
  the sum of the parts, the throughput at least 0.9x the best those parts allow on this machine's CPUs; the
  server's RSS grows by less than 64 MiB;
- the same upload scanned by clamd: at least 0.8x clamd's own INSTREAM speed on the same bytes;
- a download of the same file vs a bare server-streaming of the same messages: >= 0.8x.

Scenario `files-s3`: the same upload and download (S3_SIZE) with the files service on S3 (a SeaweedFS S3 server on
loopback), against the minio client writing and reading the same bytes on the same server directly: the
download at least 0.8x the direct client (issue 25); the upload's figures only.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.s3server import S3Server

import grpc
from devpynode.files.v1 import files_pb2, files_pb2_grpc

MIB = 1024 * 1024
SIZE = 1024 * MIB
S3_SIZE = 256 * MIB
_BLOCK = b"\x00devpynode bench\x00" + os.urandom(MIB - 17)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hashing_seconds(size: int = SIZE) -> float:
    """CPU time SHA-256 takes over `size` bytes in 1 MiB updates (what every upload must spend)."""
    digest = hashlib.sha256()
    started = time.process_time()
    for _ in range(size // MIB):
        digest.update(_BLOCK)
    return time.process_time() - started


def clamd_seconds(port: int, size: int = SIZE) -> float:
    """clamd scanning `size` bytes sent straight to it over INSTREAM (its own speed, no service in between)."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio's (the service's) sockets
        conn.sendall(b"zINSTREAM\0")
        for _ in range(size // MIB):
            conn.sendall(struct.pack(">I", MIB) + _BLOCK)
        conn.sendall(struct.pack(">I", 0))
        verdict = conn.recv(4096)
    assert verdict.rstrip(b"\0").endswith(b"OK"), verdict
    return time.perf_counter() - started


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def peak_rss(pid: int, stop: asyncio.Event) -> float:
    """The highest RSS of `pid` until `stop` is set, sampled every 50 ms."""
    peak = rss_mib(pid)
    while not stop.is_set():
        peak = max(peak, rss_mib(pid))
        await asyncio.sleep(0.05)
    return peak


def upload_requests(size: int = SIZE) -> Iterator[files_pb2.UploadFileRequest]:
    yield files_pb2.UploadFileRequest(
        metadata=files_pb2.FileMetadata(filename="bench.bin", content_type="application/octet-stream", size_bytes=size)
    )
    for _ in range(size // MIB):
        yield files_pb2.UploadFileRequest(chunk=_BLOCK)


def disk_write_seconds(directory: Path, size: int = SIZE) -> tuple[float, float]:
    """A plain write of `size` bytes in 1 MiB blocks and an fsync, on the disk the mesh stores files on:
    (seconds, CPU seconds of this process, the kernel's copying included)."""
    path = directory / "bench-disk-write.bin"
    started, cpu = time.perf_counter(), time.process_time()
    with path.open("wb") as handle:
        for _ in range(size // MIB):
            handle.write(_BLOCK)
        handle.flush()
        os.fsync(handle.fileno())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    path.unlink()
    return elapsed, cpu


def settle_page_cache(directory: Path, size: int = SIZE) -> None:
    """Write `size` bytes to a scratch file and remove it (never synced, so its pages are freed at once).

    On a VM that hands freed memory back to its host (virtio-balloon free page reporting, as here), copying into
    pages the host took back costs several times more CPU than into pages freed a moment ago (measured: 1.3 to
    2.1 against 0.6 ms per MiB), and which a write gets depends on what was freed how long before. Done right
    before the plain write and right before the mesh's upload, it gives both the same: pages just freed, as on
    a server that keeps writing."""
    path = directory / "bench-settle.bin"
    with path.open("wb") as handle:
        for _ in range(size // MIB):
            handle.write(_BLOCK)
    path.unlink()


# --- the bare server's handlers ------------------------------------------------------------------


async def sink(requests: AsyncIterator[files_pb2.UploadFileRequest], context: Any) -> files_pb2.UploadFileResponse:
    """A client-streaming upload to nowhere: the same messages as UploadFile, counted and dropped."""
    size = 0
    async for request in requests:
        size += len(request.chunk)
    return files_pb2.UploadFileResponse(file=files_pb2.File(size_bytes=size))


async def source(request: files_pb2.DownloadFileRequest, context: Any) -> AsyncIterator[files_pb2.DownloadFileResponse]:
    """A server-streaming download from memory: the same messages as DownloadFile."""
    yield files_pb2.DownloadFileResponse(file=files_pb2.File(size_bytes=SIZE))
    for _ in range(SIZE // MIB):
        yield files_pb2.DownloadFileResponse(chunk=_BLOCK)


def bare_handlers() -> Any:
    return grpc.method_handlers_generic_handler(
        "devpynode.files.v1.FileService",
        {
            "UploadFile": grpc.stream_unary_rpc_method_handler(
                sink,
                request_deserializer=files_pb2.UploadFileRequest.FromString,
                response_serializer=files_pb2.UploadFileResponse.SerializeToString,
            ),
            "DownloadFile": grpc.unary_stream_rpc_method_handler(
                source,
                request_deserializer=files_pb2.DownloadFileRequest.FromString,
                response_serializer=files_pb2.DownloadFileResponse.SerializeToString,
            ),
        },
    )


# --- measurements ------------------------------------------------------------------------------------


async def timed_upload(stub: files_pb2_grpc.FileServiceStub, metadata: Any, size: int = SIZE) -> tuple[float, str]:
    started = time.perf_counter()
    response = await stub.UploadFile(upload_requests(size), metadata=metadata)  # type: ignore[misc]
    return time.perf_counter() - started, response.file.id


async def timed_download(stub: files_pb2_grpc.FileServiceStub, file_id: str, metadata: Any, size: int = SIZE) -> float:
    started = time.perf_counter()
    got = 0
    async for piece in stub.DownloadFile(files_pb2.DownloadFileRequest(file_id=file_id), metadata=metadata):  # type: ignore[attr-defined]
        got += len(piece.chunk)
    assert got in (size, SIZE), got  # the bare source always streams SIZE
    return time.perf_counter() - started


def rate(seconds: float, size: int = SIZE) -> float:
    return size / MIB / seconds


def report_line(label: str, seconds: float, size: int = SIZE) -> None:
    print(f"  {label:<48} {rate(seconds, size):8.1f} MiB/s   ({seconds:.2f} s for {size // MIB} MiB)")


class _Blocks:
    """`size` bytes of the bench's block, as a file-like object for the minio client."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._pending = b""

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while self._left > 0 and (n < 0 or len(out) < n):
            if not self._pending:
                self._pending = _BLOCK[: min(MIB, self._left)]
            take = self._pending if n < 0 else self._pending[: n - len(out)]
            self._pending = self._pending[len(take) :]
            self._left -= len(take)
            out += take
        return bytes(out)


def direct_s3_seconds(server: S3Server, bucket: str, size: int = S3_SIZE) -> tuple[float, float, float, float]:
    """The minio client putting then getting `size` bytes on the same S3 server (its own speed): the put's and
    the get's seconds, and the get's CPU seconds in the S3 server and in this process."""
    from minio import Minio

    client = Minio(
        server.endpoint.removeprefix("http://"),
        access_key=server.access_key,
        secret_key=server.secret_key,
        secure=False,
    )
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    started = time.perf_counter()
    client.put_object(bucket, "direct.bin", _Blocks(size), length=-1, part_size=8 * MIB)  # type: ignore[arg-type]
    up = time.perf_counter() - started
    started, s3_cpu, own_cpu = time.perf_counter(), cpu_seconds(server.process.pid), time.process_time()
    response = client.get_object(bucket, "direct.bin")
    got = sum(len(chunk) for chunk in response.stream(MIB))
    response.close()
    response.release_conn()
    down = time.perf_counter() - started
    s3_cpu, own_cpu = cpu_seconds(server.process.pid) - s3_cpu, time.process_time() - own_cpu
    assert got == size, got
    client.remove_object(bucket, "direct.bin")
    return up, down, s3_cpu, own_cpu
