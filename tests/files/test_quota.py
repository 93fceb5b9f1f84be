"""The storage quota holds across concurrent streams, upload sessions and processes (the database decides)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pynode.app.server import MeshServer
from pynode.core.errors import QuotaExceeded
from pynode.core.principal import Principal
from pynode.files.module import FilesComponents
from pynode.files.service import FilesService, UploadMetadata
from tests.backends import Backend
from tests.conftest import make_settings, start_mesh

MIB = 1024 * 1024
META = UploadMetadata("q.bin", "application/octet-stream", 0, "")


def _payload(size: int) -> bytes:
    return (b"\x00devpynode test payload\x00" + os.urandom(size))[:size]


def _parts(mesh: MeshServer) -> FilesComponents:
    parts = mesh.platform.component("files")
    assert isinstance(parts, FilesComponents)
    return parts


class GatedStream:
    """An upload's chunks, held back until the test lets them go: it knows when the server asked for the
    first one (so the upload has passed its checks at the start)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.asked = asyncio.Event()
        self.go = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        self.asked.set()
        await self.go.wait()
        for i in range(0, len(self.data), MIB):
            yield self.data[i : i + MIB]


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), MIB):
        yield data[i : i + MIB]


async def _uploads(services: list[FilesService], caller: Principal, count: int, size: int) -> list[Any]:
    """`count` uploads of `size` bytes opened together (spread over `services`), then sent one after another."""
    streams = [GatedStream(_payload(size)) for _ in range(count)]
    calls = [
        asyncio.ensure_future(services[i % len(services)].upload(caller, META, s.chunks()))
        for i, s in enumerate(streams)
    ]
    for stream in streams:
        await stream.asked.wait()
    outcomes: list[Any] = []
    for stream, call in zip(streams, calls, strict=True):
        stream.go.set()
        try:
            outcomes.append(await call)
        except QuotaExceeded as exc:
            outcomes.append(exc)
    return outcomes


async def _stored(service: FilesService, caller: Principal) -> int:
    found, _ = await service.list(caller, 100, "")
    return sum(f.size for f in found)


async def test_streams_opened_together_cannot_pass_the_quota(strict: Any) -> None:
    await strict(files_quota_bytes=6 * MIB)
    service = _parts(strict.servers[0]).service
    caller = Principal(str(uuid.uuid4()), "user")
    outcomes = await _uploads([service], caller, 4, 2 * MIB)
    refused = [o for o in outcomes if isinstance(o, QuotaExceeded)]
    assert len(refused) == 1 and refused[0].reason == "QUOTA_EXCEEDED"
    assert await _stored(service, caller) == 6 * MIB


async def test_a_session_holds_its_bytes_against_streams_and_completion_checks_again(strict: Any) -> None:
    await strict(files_quota_bytes=6 * MIB)
    parts = _parts(strict.servers[0])
    caller = Principal(str(uuid.uuid4()), "user")
    declared = await parts.sessions.create(caller, UploadMetadata("s.bin", "application/octet-stream", 4 * MIB, ""))
    with pytest.raises(QuotaExceeded):  # the session's 4 MiB are taken: a stream cannot have them
        await parts.service.upload(caller, META, _chunks(_payload(3 * MIB)))
    await parts.sessions.cancel(caller, str(declared.id))  # and given back when it ends
    undeclared = await parts.sessions.create(caller, META)
    data = _payload(4 * MIB)
    for offset in range(0, len(data), MIB):
        await parts.sessions.part(caller, str(undeclared.id), offset, data[offset : offset + MIB])
    with pytest.raises(QuotaExceeded):  # the parts received are held too
        await parts.service.upload(caller, META, _chunks(_payload(3 * MIB)))
    await parts.sessions.complete(caller, str(undeclared.id))
    await parts.service.upload(caller, META, _chunks(_payload(2 * MIB)))
    with pytest.raises(QuotaExceeded):
        await parts.service.upload(caller, META, _chunks(_payload(1)))
    assert await _stored(parts.service, caller) == 6 * MIB


async def test_two_processes_on_one_database_share_the_quota(own_backend: Backend, tmp_path: Path) -> None:
    """Two meshes on one database (PostgreSQL, or one SQLite file): the quota is the database's to keep."""
    overrides: dict[str, Any] = {"files_quota_bytes": 6 * MIB}
    if own_backend.name == "embedded":
        overrides["database_url"] = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    meshes = [await start_mesh(make_settings(own_backend, tmp_path / str(i), **overrides)) for i in range(2)]
    try:
        services = [_parts(m).service for m in meshes]
        caller = Principal(str(uuid.uuid4()), "user")
        outcomes = await _uploads(services, caller, 4, 2 * MIB)
        assert sum(isinstance(o, QuotaExceeded) for o in outcomes) == 1
        assert await _stored(services[0], caller) == 6 * MIB
        # A failed upload gives its reservation back: after a deletion the room is there again.
        kept = [o for o in outcomes if not isinstance(o, QuotaExceeded)]
        await services[1].delete(caller, str(kept[0].id))
        await services[0].upload(caller, META, _chunks(_payload(2 * MIB)))
        assert await _stored(services[1], caller) == 6 * MIB
    finally:
        for mesh in meshes:
            await mesh.stop(0)
