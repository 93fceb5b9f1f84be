"""BlobStore on the local filesystem (the embedded default).

An upload is written to a temporary name under `.partial/`, fsynced, then renamed to its key: a reader never
sees a half-written object, and a crash leaves only a temporary file, which the next start removes. Writes
and fsyncs run in threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024
STALE_PARTIAL_SECONDS = 3600.0


class LocalWriter:
    """One object being written under `.partial/`."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._temp = root / ".partial" / uuid.uuid4().hex
        self._file: BinaryIO | None = None

    async def write(self, chunk: bytes) -> None:
        if self._file is None:
            self._file = await asyncio.to_thread(self._temp.open, "wb")
        await asyncio.to_thread(self._file.write, chunk)

    async def commit(self, key: str) -> None:
        final = self._root / key
        await asyncio.to_thread(self._commit, final)

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
        await asyncio.to_thread(self._abort)

    def _abort(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()


class LocalBlobStore:
    """Objects as files under `root` (keys are relative paths)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / ".partial").mkdir(parents=True, exist_ok=True)

    def sweep_partials(self) -> int:
        """Remove temporary files a crash left behind; how many."""
        removed = 0
        cutoff = time.time() - STALE_PARTIAL_SECONDS
        for path in (self.root / ".partial").iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def begin(self) -> LocalWriter:
        return LocalWriter(self.root)

    async def read(self, key: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread((self.root / key).open, "rb")
        try:
            await asyncio.to_thread(handle.seek, offset)
            left = length
            while left is None or left > 0:
                chunk = await asyncio.to_thread(handle.read, CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    def _delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / key).unlink()
