"""Local storage reads: from the page cache on the event loop, else from a thread; the same bytes either way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pynode.files.adapters import local_store
from pynode.files.adapters.local_store import CHUNK, LocalBlobStore

SIZE = 3 * CHUNK + 12345  # a short last chunk


async def _read(store: LocalBlobStore, offset: int, length: int | None) -> list[bytes]:
    return [chunk async for chunk in store.read("users/u/uploads/f", offset, length)]


@pytest.fixture
def stored(tmp_path: Path) -> tuple[LocalBlobStore, bytes]:
    data = os.urandom(SIZE)
    path = tmp_path / "users/u/uploads/f"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return LocalBlobStore(tmp_path), data


@pytest.mark.parametrize("cached", [True, False], ids=["page cache", "thread"])
@pytest.mark.parametrize(
    ("offset", "length"), [(0, None), (0, SIZE), (CHUNK - 1, 2), (CHUNK + 5, None), (SIZE - 7, 100), (SIZE, None)]
)
async def test_ranges_read_the_same_bytes_from_the_cache_or_a_thread(
    stored: tuple[LocalBlobStore, bytes],
    monkeypatch: pytest.MonkeyPatch,
    cached: bool,
    offset: int,
    length: int | None,
) -> None:
    store, data = stored
    pread, trips = os.pread, []

    def counted(*args: int) -> bytes:
        trips.append(args)
        return pread(*args)

    monkeypatch.setattr(local_store.os, "pread", counted)
    if not cached:
        monkeypatch.setattr(local_store, "_cached", lambda *_: None)  # as if nothing were in the page cache
    chunks = await _read(store, offset, length)
    expected = data[offset : None if length is None else offset + length]
    assert b"".join(chunks) == expected
    assert all(len(chunk) <= CHUNK for chunk in chunks)
    if cached:  # the file was just written: only a short last chunk (read to the end) goes to a thread
        assert len(trips) <= 1
    else:
        assert len(trips) >= len(chunks)


async def test_a_filesystem_without_nowait_reads_are_given_up_once(
    stored: tuple[LocalBlobStore, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, data = stored
    calls = []

    def refusing(*args: object) -> int:
        calls.append(args)
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(local_store.os, "preadv", refusing)
    monkeypatch.setattr(local_store, "_NOWAIT", 8)
    assert b"".join(await _read(store, 0, None)) == data
    assert len(calls) == 1 and local_store._NOWAIT is None
