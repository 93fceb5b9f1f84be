"""BlobStore on the local filesystem (the embedded default).

An upload is written to a temporary name under `.partial/<process>/`, fsynced, then renamed to its key: a reader
never sees a half-written object, and a crash leaves only a temporary file. Each process holds an flock on
`.partial/<process>.lock` for its life; the sweep (at start, then periodically) removes every other process's
directory whose lock it can take, that is whose process is gone, whatever its age.

Each writer owns its pipeline: an upload's chunks queue on its lane, a one-thread pool it shares with other
uploads in turn (lanes.py), where each is observed (hashed) and written in one piece of work, in order, at most
PIPELINE_BYTES behind the network; a trip to the thread takes as many queued chunks as there are. Commits,
deletes, staging and reads that miss the page cache run on the store's `files-disk` pool; reads take what the
page cache holds on the loop (RWF_NOWAIT, never waiting for the disk there). No work goes to the loop's default
pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from pynode.core.executors import BlockingPool, Executors
from pynode.files import pools
from pynode.files.domain import past_the_end
from pynode.files.lanes import Lanes
from pynode.files.ports import Chunk, Observer

CHUNK = 1024 * 1024
PIPELINE_BYTES = 4 * CHUNK  # an upload's bytes queued on its lane at most (how far the disk may lag the network)
DISK_THREADS = 4
STALE_PARTIAL_SECONDS = 3600.0
SYNC_EVERY = 64 * 1024 * 1024  # flushed to disk as it goes, so the final fsync is short


_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)  # Linux 4.14+; elsewhere every read goes to a thread


def _cached(fd: int, into: memoryview, offset: int) -> bytes | None:
    """Read from the page cache without waiting for the disk (RWF_NOWAIT); None when that would wait.

    A trip to a thread costs more than copying a cached MiB, and a download usually reads what was just
    written or read: most chunks never leave the event loop, and none waits for the disk on it."""
    global _NOWAIT
    if _NOWAIT is None:
        return None
    try:
        got = os.preadv(fd, [into], offset, _NOWAIT)
    except BlockingIOError:  # not (all) in the page cache
        return None
    except OSError:  # a filesystem without RWF_NOWAIT: stop trying
        _NOWAIT = None
        return None
    return bytes(into[:got]) if got == len(into) else None  # a short read may be a partly cached range


class LocalWriter:
    """One object being written under this process's `.partial/` directory, to be renamed to its key."""

    def __init__(
        self, root: Path, partial: Path, key: str, lanes: Lanes, disk: BlockingPool, observe: Observer | None
    ) -> None:
        self._root = root
        self._key = key
        self._temp = partial / uuid.uuid4().hex
        self._file: BinaryIO | None = None
        self._unsynced = 0
        self._disk = disk
        self._observe = observe
        # The chunks queue on a lane, where each is hashed and written in one piece of work, in order.
        self._lane = lanes.lane(self._write, PIPELINE_BYTES)

    async def write(self, chunk: Chunk) -> None:
        await self._lane.put(chunk)  # returns while earlier chunks are written; a failure comes out here

    async def drain(self) -> None:
        await self._lane.drain()

    def _write(self, chunk: Chunk) -> None:
        if self._observe is not None:
            self._observe(chunk)
        if self._file is None:
            self._file = self._temp.open("wb")
        self._file.write(chunk)
        self._unsynced += len(chunk)
        if self._unsynced >= SYNC_EVERY:
            self._file.flush()
            os.fdatasync(self._file.fileno())
            self._unsynced = 0

    async def commit(self) -> None:
        await self.drain()
        await self._disk.run(self._commit, self._root / self._key)

    def _commit(self, final: Path) -> None:
        if self._file is None:
            self._file = self._temp.open("wb")  # an empty file is a file too
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._temp, final)
        directory = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

    async def abort(self) -> None:
        await self._lane.stop()  # what it is writing now ends before the file goes
        await self._disk.run(self._abort)

    def _abort(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()


def _owner_gone(lock: Path) -> bool:
    """Whether the process that holds `lock` is gone (its flock can be taken; the kernel drops a dead
    process's locks)."""
    try:
        handle = lock.open("rb")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


class LocalBlobStore:
    """Objects as files under `root` (keys are relative paths). Its threads come from `executors` (the process
    closes them), or are made here and stopped by `close` (a tool, a test)."""

    def __init__(self, root: Path, executors: Executors | None = None) -> None:
        self.root = root
        self._own_disk = executors is None
        self.disk = pools.pool(executors, "files-disk", DISK_THREADS)
        self._lanes = Lanes(executors=executors)
        self._partials = root / ".partial"
        self._partials.mkdir(parents=True, exist_ok=True)
        owner = uuid.uuid4().hex
        # Locked before it has its name, so no sweep ever sees this process's lock free.
        taking = self._partials / f"{owner}.locking"
        self._lock: BinaryIO | None = taking.open("wb")
        fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX)
        self.partial = self._partials / owner
        self.partial.mkdir()
        taking.rename(self._partials / f"{owner}.lock")

    def sweep_partials(self) -> int:
        """Remove temporary files no live process owns (a crash's); how many entries."""
        removed = 0
        cutoff = time.time() - STALE_PARTIAL_SECONDS
        for path in self._partials.iterdir():
            if path == self.partial or path.name == f"{self.partial.name}.lock":
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.suffix == ".lock":
                    if _owner_gone(path):
                        shutil.rmtree(path.with_suffix(""), ignore_errors=True)
                        path.unlink()
                        removed += 1
                elif not path.with_suffix(".lock").exists() and path.stat().st_mtime < cutoff:
                    # An earlier layout's loose file, or a directory whose lock went: by age, as before.
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                    removed += 1
        return removed

    async def sweep(self) -> int:
        """`sweep_partials` off the event loop (the periodic sweep)."""
        return await self.disk.run(self.sweep_partials)

    def close(self) -> None:
        """Give up this process's directory (after its uploads ended) and its lock."""
        shutil.rmtree(self.partial, ignore_errors=True)
        if self._lock is not None:
            with contextlib.suppress(FileNotFoundError):
                (self._partials / f"{self.partial.name}.lock").unlink()
            self._lock.close()
            self._lock = None
        self._lanes.close()
        if self._own_disk:
            pools.stop_own(self.disk)

    def begin(self, key: str, observe: Observer | None = None) -> LocalWriter:
        return LocalWriter(self.root, self.partial, key, self._lanes, self.disk, observe)

    async def read(self, key: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        handle = await self.disk.run((self.root / key).open, "rb")
        fd = handle.fileno()
        size = os.fstat(fd).st_size  # objects never change once written (a new upload is a new file)
        if offset > size:
            handle.close()
            raise past_the_end(offset, size)
        end = size if length is None else min(size, offset + length)
        view = memoryview(bytearray(CHUNK))
        reading: asyncio.Future[bytes] | None = None
        try:
            while offset < end:
                want = min(CHUNK, end - offset)
                chunk = _cached(fd, view[:want], offset)
                if chunk is None:  # not in the page cache: read from disk in a thread, off the loop
                    # The read is a future of this function's own, awaited here whatever ends the download.
                    reading = asyncio.ensure_future(self.disk.run(os.pread, fd, want, offset))
                    chunk = await asyncio.shield(reading)  # a cancelled download still waits for it below
                    reading = None
                if not chunk:
                    return
                offset += len(chunk)
                yield chunk
        finally:
            if reading is not None:
                await asyncio.wait([reading])  # its thread still uses the file
            handle.close()

    async def delete(self, key: str) -> None:
        await self.disk.run(self._delete, key)

    def _delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / key).unlink()

    async def download_url(self, key: str, filename: str, content_type: str, seconds: int) -> str | None:
        return None  # files on local disk are served through DownloadFile only


class LocalStagedObject:
    """A session's file, read for the checks, then renamed to the object's path (no copy)."""

    def __init__(self, path: Path, length: int, final: Path, disk: BlockingPool, observe: Observer | None) -> None:
        self._path = path
        self._length = length
        self._final = final
        self._disk = disk
        self._observe = observe

    async def chunks(self) -> AsyncIterator[bytes]:
        if not self._path.exists():
            return
        handle = await self._disk.run(self._path.open, "rb")
        left = self._length
        try:
            while left > 0 and (chunk := await self._disk.run(self._read, handle, min(CHUNK, left))):
                left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    def _read(self, handle: BinaryIO, size: int) -> bytes:
        chunk = handle.read(size)
        if chunk and self._observe is not None:
            self._observe(chunk)  # hashed in the trip that read it
        return chunk

    async def commit(self) -> None:
        await self._disk.run(self._commit)

    def _commit(self) -> None:
        if not self._path.exists():
            self._path.touch()
        # Bytes past the recorded length (a part written just before a crash, never recorded) are not the file's.
        os.truncate(self._path, self._length)
        self._final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path, self._final)
        directory = os.open(self._final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    async def abort(self) -> None:
        return None  # nothing was made: the staged file stays until the session is discarded


class LocalStaging:
    """Resumable uploads' bytes, one file per session under `.sessions/`: parts are written at their offset
    and fsynced before the session records them, so a restart resumes where the record says."""

    def __init__(self, root: Path, disk: BlockingPool) -> None:
        self.root = root
        self._disk = disk
        self._dir = root / ".sessions"
        self._dir.mkdir(parents=True, exist_ok=True)

    def _path(self, session_id: uuid.UUID) -> Path:
        return self._dir / session_id.hex

    async def write(self, session_id: uuid.UUID, offset: int, data: bytes) -> None:
        await self._disk.run(self._write, self._path(session_id), offset, data)

    @staticmethod
    def _write(path: Path, offset: int, data: bytes) -> None:
        with path.open("r+b" if path.exists() else "wb") as handle:
            handle.truncate(offset)  # drop anything past the recorded offset (a part that was never recorded)
            handle.seek(offset)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def assemble(
        self, session_id: uuid.UUID, length: int, key: str, observe: Observer | None = None
    ) -> LocalStagedObject:
        return LocalStagedObject(self._path(session_id), length, self.root / key, self._disk, observe)

    async def discard(self, session_id: uuid.UUID) -> None:
        await self._disk.run(self._discard, self._path(session_id))

    @staticmethod
    def _discard(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
