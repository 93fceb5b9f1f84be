"""AI replies as server-side jobs: they outlive the stream that started them, and their end is always saved.

A `GenerationJob` writes one reply: it streams the answer from the AI router, keeps the text in memory
for local listeners (the SendMessage stream that started it, or a retry of it), appends each delta to
the conversation's event stream for every other member and process, and saves the end, whatever ends
it (finished, cancelled, failed, the server stopping). The `GenerationRunner` owns this process's jobs:
it renews their leases with a checkpoint of the text so far, takes cancellations from any process, and
sweeps replies whose owner died (its lease ran out) into `failed`, keeping their text.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

from pynode.chat.domain import (
    CANCELLED,
    COMPLETE,
    ERROR,
    FAILED,
    LENGTH,
    STOP,
    ChatMessage,
)
from pynode.chat.events import message_data, publish
from pynode.chat.ports import Completions, ConversationRepository, PromptMessage
from pynode.core import tasks
from pynode.core.db import utcnow
from pynode.core.errors import DomainError
from pynode.core.events import EventFeed, Subscription
from pynode.core.streams import EventStreams

log = logging.getLogger("pynode.chat")

CANCEL_CHANNEL = "chat:cancel"
RENEW_MAX_SECONDS = 2.0
LOST_OWNER = "the server writing this answer stopped before it finished"
STOPPED = "the chat server stopped while writing this answer; ask again"

PromptBuilder = Callable[["GenerationJob"], Awaitable[list[PromptMessage]]]
# Called once an answer's end is saved, by its own job or by the sweep of lost answers.
Finished = Callable[[ChatMessage], Awaitable[None]]


class GenerationJob:
    """One AI reply being written by this process."""

    def __init__(self, reply: ChatMessage, asked: ChatMessage, recent: list[ChatMessage] | None) -> None:
        self.reply = reply
        self.asked = asked
        # The newest messages, read ahead while `asked` was stored (None: not read, the prompt reads them).
        self.recent = recent
        self.pieces: list[str] = []
        self.last_event_id = reply.checkpoint_event_id
        self.cancelled_by_member = False
        self.done = asyncio.Event()
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def add(self, text: str) -> int:
        self.pieces.append(text)
        self._wake()
        return len(self.pieces) - 1

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def finish(self) -> None:
        self.done.set()
        self._wake()

    async def deltas(self, after_seq: int = -1) -> AsyncIterator[tuple[int, str]]:
        """(seq, text) of every piece after `after_seq`, as they come, until the reply ends."""
        seq = after_seq + 1
        while True:
            changed = self._changed
            while seq < len(self.pieces):
                yield seq, self.pieces[seq]
                seq += 1
            if self.done.is_set():
                return
            await changed.wait()


class GenerationRunner:
    """This process's generation jobs, their leases and the sweep of everyone's lost ones."""

    def __init__(
        self,
        repo: ConversationRepository,
        streams: EventStreams,
        feed: EventFeed,
        completions: Completions,
        owner: str,
        lease_seconds: float,
    ) -> None:
        self._repo = repo
        self._streams = streams
        self._feed = feed
        self._completions = completions
        self.owner = owner
        self._lease = lease_seconds
        self.jobs: dict[uuid.UUID, GenerationJob] = {}
        self.prompt: PromptBuilder | None = None
        self.finished: Finished | None = None
        self.ended: Callable[[str], None] = lambda state: None  # counts answers by how they ended
        self._subscription: Subscription | None = None
        self._renewal: tasks.Periodic | None = None
        self._sweep: tasks.Periodic | None = None

    def start_background(self) -> None:
        """Lease renewal, the sweep of lost replies and cross-process cancellation (needs a running loop)."""
        self._subscription = self._feed.subscribe(CANCEL_CHANNEL, self._cancel_message, lambda: None)
        # Renewal also carries cancellations whose pub/sub message was lost: at most every 2 s.
        every = min(self._lease / 3, RENEW_MAX_SECONDS)
        self._renewal = tasks.Periodic("chat-lease-renewal", every, self.renew, "leases renewed")
        self._sweep = tasks.Periodic("chat-lease-sweep", self._lease / 2, self.sweep, "lost answers marked failed")

    def start(self, reply: ChatMessage, asked: ChatMessage, recent: list[ChatMessage] | None) -> GenerationJob:
        """Write `reply` (stored, streaming) to `asked` in a task of its own, outside the caller's context
        (no deadline, no identity)."""
        job = GenerationJob(reply, asked, recent)
        self.jobs[reply.id] = job
        job.task = asyncio.get_running_loop().create_task(
            self._run(job), name=f"generation {reply.id}", context=contextvars.Context()
        )
        return job

    def cancel_local(self, message_id: uuid.UUID) -> GenerationJob | None:
        """Cancel a job of this process; None when it is not here."""
        job = self.jobs.get(message_id)
        if job is None or job.task is None:
            return None
        job.cancelled_by_member = True
        job.task.cancel()
        return job

    def _cancel_message(self, message: str) -> None:
        with contextlib.suppress(ValueError):
            self.cancel_local(uuid.UUID(message))

    async def request_cancel(self, message_id: uuid.UUID) -> None:
        """Ask whichever process owns the reply to stop it (its lease renewal sees the flag too)."""
        await self._repo.request_cancel(message_id)
        await self._feed.publish(CANCEL_CHANNEL, str(message_id))

    async def _run(self, job: GenerationJob) -> None:
        reply = job.reply
        try:
            assert self.prompt is not None
            prompt = await self.prompt(job)
            async with contextlib.aclosing(self._completions.generate(reply.author_id, reply.model, prompt)) as pieces:
                async for piece in pieces:
                    if piece.text:
                        seq = job.add(piece.text)
                        delta = {"message_id": str(reply.id), "seq": seq, "text": piece.text}
                        job.last_event_id = await publish(self._streams, reply.conversation_id, "delta", delta)
                    if piece.finish_reason:
                        reply.finish_reason = piece.finish_reason
                        reply.prompt_tokens, reply.completion_tokens = piece.prompt_tokens, piece.completion_tokens
                        reply.model = piece.model or reply.model
            if reply.finish_reason in (STOP, LENGTH):
                reply.state = COMPLETE
            else:
                reply.state, reply.finish_reason = FAILED, ERROR
                reply.error = reply.error or "the model ended the answer with an error"
        except asyncio.CancelledError:
            if job.cancelled_by_member:
                reply.state, reply.finish_reason = CANCELLED, CANCELLED
            else:
                reply.state, reply.finish_reason, reply.error = FAILED, ERROR, STOPPED
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the end is saved below; the cancellation was ours and is handled
        except DomainError as exc:
            reply.state, reply.finish_reason, reply.error = FAILED, ERROR, exc.message
        except Exception:
            log.exception("generation %s failed", reply.id)
            reply.state, reply.finish_reason, reply.error = FAILED, ERROR, "internal error while writing the answer"
        reply.text = job.text
        reply.last_seq = len(job.pieces) - 1
        if not reply.completion_tokens:
            reply.completion_tokens = len(job.pieces)
        try:
            await self._save_end(job)
        finally:
            self.jobs.pop(reply.id, None)
            job.finish()

    async def _save_end(self, job: GenerationJob) -> None:
        reply = job.reply
        try:
            if not await self._repo.finish(self.owner, reply):
                log.warning("generation %s ended after its lease was taken; its end was not saved", reply.id)
                fresh = await self._repo.message(reply.id)
                if fresh is not None:
                    job.reply = fresh
                return
            self.ended(reply.state)
            await publish(self._streams, reply.conversation_id, "message", message_data(reply))
            if self.finished is not None:
                await self.finished(reply)
        except DomainError as exc:  # a store outage: the sweep ends it from the last checkpoint
            log.warning("could not save the end of generation %s: %s", reply.id, exc.message)

    async def renew(self) -> int:
        """Checkpoint every local job's text and renew its lease; stop those a member cancelled."""
        until = utcnow() + timedelta(seconds=self._lease)
        for message_id, job in list(self.jobs.items()):
            if job.done.is_set():
                continue
            ours, cancel = await self._repo.checkpoint(
                self.owner, message_id, job.text, len(job.pieces) - 1, job.last_event_id, until
            )
            if cancel or not ours:
                self.cancel_local(message_id)
        return 0

    async def sweep(self) -> int:
        """Fail every reply whose owner stopped renewing its lease (a crash, kill -9, a lost node)."""
        lost = await self._repo.expire_leases(utcnow(), LOST_OWNER)
        for reply in lost:
            self.ended(reply.state)
            await publish(self._streams, reply.conversation_id, "message", message_data(reply))
            if self.finished is not None:
                await self.finished(reply)
        return len(lost)

    async def close(self) -> None:
        """Stop renewing and sweeping; end local jobs as failed (the server is stopping) and save them."""
        if self._subscription is not None:
            self._subscription.cancel()
        for periodic in (self._renewal, self._sweep):
            if periodic is not None:
                await periodic.stop()
        running = [job.task for job in self.jobs.values() if job.task is not None]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=5.0)
