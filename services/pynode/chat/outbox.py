"""An answer's events on their way to the conversation's event stream: in order, and through a short outage.

A running answer appends a delta per token. Appending in the token loop made a Redis blip of a few seconds fail
every answer being written. Here the answer's job queues its events and goes on reading the model; one task per
answer appends them in order, and when the event store is unavailable it retries (backing off up to
MAX_BACKOFF_SECONDS) for as long as `budget_seconds` of continuous outage, the answer's lease: the process still
renews the lease meanwhile (the database holds it), so no other process sweeps the answer. An outage longer
than that is the answer's failure, with a reason the member can act on (ask again).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import Callable

from pynode.chat.domain import ChatEvent
from pynode.chat.events import publish
from pynode.core.errors import Unavailable
from pynode.core.streams import EventStreams

log = logging.getLogger("pynode.chat")

FIRST_BACKOFF_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 1.0


class EventStoreLost(Unavailable):
    """The event store stayed unreachable for longer than an answer may wait for it."""

    reason = "EVENT_STORE_UNAVAILABLE"


class AnswerOutbox:
    """One answer's queue of events for its conversation's stream (see the module's docstring)."""

    def __init__(
        self,
        streams: EventStreams,
        conversation_id: uuid.UUID,
        budget_seconds: float,
        appended: Callable[[ChatEvent, str], None],
    ) -> None:
        self._streams = streams
        self._conversation_id = conversation_id
        self._budget = budget_seconds
        self._appended = appended  # (event, its stream id), after each event is in the stream
        self._queue: collections.deque[ChatEvent] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self.lost: EventStoreLost | None = None
        self.held = False  # events queue up but none is appended until `release`

    def put(self, event: ChatEvent) -> None:
        """Queue one event; appended after every event queued before it."""
        if self.lost is not None:
            return
        self._queue.append(event)
        self._start()

    def release(self) -> None:
        """Append what was queued while held, and every event from now on."""
        self.held = False
        self._start()

    def _start(self) -> None:
        if self._queue and not self.held and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._send(), name=f"outbox {self._conversation_id}")

    async def drain(self, stopping_seconds: float | None = None) -> None:
        """Until every queued event is appended; raises EventStoreLost when the outage outlasted the budget
        (or `stopping_seconds`, for a process that is stopping)."""
        task = self._task
        if task is not None and not task.done():
            done, _ = await asyncio.wait([task], timeout=stopping_seconds)
            if not done:
                task.cancel()
                await asyncio.wait([task])
                self.lost = self.lost or EventStoreLost(
                    "the event store did not come back before the server stopped; ask again", retry_after=1.0
                )
        if self.lost is not None:
            raise self.lost

    async def _send(self) -> None:
        try:
            await self._send_queued()
        except Exception:  # a bug, not an outage: the answer fails with it rather than a task dying unseen
            log.exception("could not append an answer's event")
            self.lost = EventStoreLost("could not write this answer's events; ask again", retry_after=1.0)
            self._queue.clear()

    async def _send_queued(self) -> None:
        while self._queue and self.lost is None:
            event = self._queue[0]
            event_id = await self._append(event)
            if event_id is None:
                return
            self._queue.popleft()
            self._appended(event, event_id)

    async def _append(self, event: ChatEvent) -> str | None:
        down_since: float | None = None
        backoff = FIRST_BACKOFF_SECONDS
        while True:
            try:
                event_id = await publish(self._streams, self._conversation_id, event)
            except Unavailable as exc:
                now = time.monotonic()
                if down_since is None:
                    down_since = now
                    log.warning("event store unavailable for an answer's events (%s); retrying", exc.message)
                if now - down_since >= self._budget:
                    self.lost = EventStoreLost(
                        f"the event store was unreachable for over {self._budget:g} s while writing this "
                        "answer; ask again",
                        retry_after=1.0,
                    )
                    self._queue.clear()
                    return None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            if down_since is not None:
                log.info("event store back after %.1f s; the answer's events went on", time.monotonic() - down_since)
            return event_id
