"""Giving freed memory back to the system after bursts of transfers, and not in the middle of one.

gRPC and the read buffers allocate a download's megabytes in many small pieces; when the downloads end, glibc
keeps the freed pages in its arenas, so a burst of 100 unread downloads left the process 0.5-0.6 GB larger
for good (measured). `malloc_trim` hands the free pages back. Elsewhere than glibc it is a no-op.

During an upload the opposite hurt: each received MiB is a fresh allocation, and glibc's own heuristics gave
the heap's top back to the kernel (brk) as soon as a few MiB were free, so the next messages faulted in new,
zeroed pages: 7% of an upload's server CPU in page faults and brk (profiled). The files service keeps up to
KEEP_FREE_BYTES at the top of the heap and serves messages up to MMAP_FROM_BYTES from it (not from mmap);
the trims after transfers return the rest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time

from pynode.core.executors import BlockingPool

TRIM_EVERY = 5.0  # seconds between trims at most: it walks the heap, holding the arenas' locks
KEEP_FREE_BYTES = 16 * 1024 * 1024  # glibc M_TRIM_THRESHOLD: free bytes at the heap's top kept between trims
MMAP_FROM_BYTES = 4 * 1024 * 1024  # glibc M_MMAP_THRESHOLD: larger allocations get their own mapping
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


class MemoryReturn:
    """Trims the C heap when the process's last open download ends, and otherwise at most every TRIM_EVERY
    seconds as downloads end (a busy server may never be without one)."""

    def __init__(self, pool: BlockingPool) -> None:
        self.pool = pool
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name) if name else None
        self._trim = getattr(libc, "malloc_trim", None)
        self._last = 0.0
        mallopt = getattr(libc, "mallopt", None)
        if mallopt is not None and self._trim is not None:  # glibc: the process's heap serves transfers' buffers
            mallopt(_M_TRIM_THRESHOLD, KEEP_FREE_BYTES)
            mallopt(_M_MMAP_THRESHOLD, MMAP_FROM_BYTES)

    async def after_release(self, still_open: int) -> None:
        """Called when a download or an upload ended, with how many downloads the process still has open."""
        now = time.monotonic()
        if self._trim is None or (still_open and now - self._last < TRIM_EVERY):
            return
        self._last = now
        await self.pool.run(self._trim, 0)
