"""The usage ledger's write buffer: rows gathered while the last INSERT ran go out as one.

At hundreds of generations a second, a transaction per row cost more CPU than the relay itself (and took
the first token of new streams with it). Rows wait here at most `max_delay` seconds; reads flush first
(a caller sees its own generations), and closing flushes what is left. A crash loses at most that much.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Protocol

from pynode.ai.domain import Generation, UsageTotal
from pynode.core import tracing
from pynode.core.tasks import TaskSet

log = logging.getLogger("pynode.ai")

MAX_BUFFERED = 10_000  # if the database is down this long, the oldest rows are dropped (and counted)


class BatchLedger(Protocol):
    """A ledger that takes many rows at once."""

    async def add_many(self, generations: list[Generation]) -> None: ...

    async def totals(
        self, user_id: str | None, start: datetime | None, end: datetime | None, by: str
    ) -> list[UsageTotal]: ...


class BufferedLedger:
    """UsageLedger in front of a BatchLedger."""

    def __init__(self, inner: BatchLedger, max_delay: float = 0.05) -> None:
        self._inner = inner
        self.max_delay = max_delay
        self._rows: list[Generation] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._writer = TaskSet("ai-ledger")  # the one flush loop, started by the first row
        self.dropped = 0

    async def add(self, generation: Generation) -> None:
        self._rows.append(generation)
        if len(self._rows) > MAX_BUFFERED:
            del self._rows[0]
            self.dropped += 1
        if not self._writer.closing:  # after close, rows wait for an explicit flush
            self._writer.once("flush", self._run)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.max_delay)
            try:
                await self.flush()
            except Exception as exc:  # kept for the next round; the database may be back by then
                log.warning("usage rows not written yet (%s); retrying", type(exc).__name__)
                await asyncio.sleep(1.0)
                self._wake.set()

    async def flush(self) -> None:
        """Write every buffered row now."""
        async with self._lock:
            rows, self._rows = self._rows, []
            if not rows:
                return
            try:
                with tracing.detached("ai.ledger.flush", **{"devpynode.rows": len(rows)}):
                    await self._inner.add_many(rows)
            except BaseException:
                self._rows[:0] = rows
                raise

    async def totals(
        self, user_id: str | None, start: datetime | None, end: datetime | None, by: str
    ) -> list[UsageTotal]:
        await self.flush()
        return await self._inner.totals(user_id, start, end, by)

    async def close(self) -> None:
        """Stop the writer and write what is left."""
        await self._writer.close(grace=0)  # the loop only waits; what it holds is written just below
        await self.flush()
