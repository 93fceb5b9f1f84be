"""AI replies as server-side jobs: they outlive the stream that started them, and their end is always saved.

A `GenerationJob` writes one reply: it streams the answer from the AI router, keeps the text in memory
for local listeners (the SendMessage stream that started it, or a retry of it), appends each delta to
the conversation's event stream for every other member and process, and saves the end, whatever ends
it (finished, cancelled, failed, the server stopping). The `GenerationRunner` owns this process's jobs:
it renews their leases with a checkpoint of the text so far, takes cancellations from any process, and
sweeps replies whose owner died (its lease ran out) into `failed`, keeping their text.

A job's events go through its `AnswerOutbox` (outbox.py), so a short outage of the event store delays them
instead of failing the answer. When the process stops, `stop` ends every running answer first, while the
listener still serves and the AI router still streams: each keeps all its text and the one reason STOPPED
(before, the grace period's end cut the router's stream first, and the answer failed as "the ai service is
unreachable", or stayed STREAMING when the closer's cancellation landed while its end was being saved).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any, Protocol

from pynode.chat.domain import (
    CANCELLED,
    COMPLETE,
    ERROR,
    FAILED,
    FINISHED,
    STREAMING,
    ChatEvent,
    ChatMessage,
    DeltaEvent,
    MessageEvent,
    ReplyEvent,
    ToolSpec,
)
from pynode.chat.events import publish
from pynode.chat.outbox import AnswerOutbox
from pynode.chat.ports import Completions, GenerationLeases, MessageRepository, PromptMessage
from pynode.core import tasks, tracing
from pynode.core.errors import DomainError
from pynode.core.events import EventFeed, Subscription
from pynode.core.streams import EventStreams
from pynode.core.timestamps import utcnow

log = logging.getLogger("pynode.chat")

CANCEL_CHANNEL = "chat:cancel"
RENEW_MAX_SECONDS = 2.0
LOST_OWNER = "the server writing this answer stopped before it finished"
STOPPED = "the chat server stopped while writing this answer; ask again"
STOP_SECONDS = 5.0  # how long a stopping process waits for each answer's end to be saved and published


class _Abandoned(Exception):
    """The answer's exchange was not stored (see GenerationRunner.abandon)."""


class PromptSource(Protocol):
    """What the model is given for a reply (prompts.py)."""

    async def prompt(
        self, reply: ChatMessage, asked: ChatMessage, recent: list[ChatMessage] | None
    ) -> list[PromptMessage]: ...


# Called once an answer's end is saved, by its own job or by the sweep of lost answers.
Finished = Callable[[ChatMessage], Awaitable[None]]


class GenerationJob:
    """One AI reply being written by this process."""

    def __init__(
        self,
        reply: ChatMessage,
        asked: ChatMessage,
        recent: list[ChatMessage] | None,
        client_address: str = "",
        tools: tuple[ToolSpec, ...] = (),
    ) -> None:
        self.reply = reply
        self.tools = tools  # what the member's client offers the model for this reply
        self.asked = asked
        # The newest messages, read ahead while `asked` was stored (None: not read, the prompt reads them).
        self.recent = recent
        self.client_address = client_address  # the end user's, for the AI router's per-address limits
        self.pieces: list[str] = []
        self.last_event_id = reply.checkpoint_event_id
        self.cancelled_by_member = False
        self.ending = False  # its end is being saved: a cancellation now would lose it
        self.outbox: AnswerOutbox | None = None
        # Set while the exchange is still being stored (see GenerationRunner.start): True once it is, False when
        # it was not (the answer is then dropped unseen). None: stored before the job started.
        self.stored: asyncio.Future[bool] | None = None
        self.done = asyncio.Event()
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def is_stored(self) -> bool:
        """Whether its exchange (the member's message and this reply) is in the database."""
        return self.stored is None or (self.stored.done() and self.stored.result())

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

    async def events(self) -> AsyncGenerator[ReplyEvent, None]:
        """The reply's deltas from memory as they come, then its end. Leaving this loop never stops the job."""
        reply_id = str(self.reply.id)
        async for seq, text in self.deltas():
            yield DeltaEvent(reply_id, seq, text)
        await self.done.wait()
        yield MessageEvent(self.reply)


class GenerationRunner:
    """This process's generation jobs, their leases and the sweep of everyone's lost ones."""

    def __init__(
        self,
        leases: GenerationLeases,
        messages: MessageRepository,
        streams: EventStreams,
        feed: EventFeed,
        completions: Completions,
        prompts: PromptSource,
        finished: Finished,
        owner: str,
        lease_seconds: float,
        ended: Callable[[str], None] = lambda state: None,
    ) -> None:
        self._leases = leases
        self._messages = messages
        self._streams = streams
        self._feed = feed
        self._completions = completions
        self._prompts = prompts
        self._finished = finished
        self.owner = owner
        self._lease = lease_seconds
        self._ended = ended  # counts answers by how they ended
        self.jobs: dict[uuid.UUID, GenerationJob] = {}
        self._subscription: Subscription | None = None
        self._tasks = tasks.TaskSet("chat-generations")  # the jobs, the lease renewal and the sweep
        self._stopping = False

    def start_background(self) -> None:
        """Lease renewal, the sweep of lost replies and cross-process cancellation (needs a running loop)."""
        self._subscription = self._feed.subscribe(CANCEL_CHANNEL, self._cancel_message, lambda: None)
        # Renewal also carries cancellations whose pub/sub message was lost: at most every 2 s.
        every = min(self._lease / 3, RENEW_MAX_SECONDS)
        self._tasks.every("chat-lease-renewal", every, self.renew, "leases renewed")
        self._tasks.every("chat-lease-sweep", self._lease / 2, self.sweep, "lost answers marked failed")

    def start(
        self,
        reply: ChatMessage,
        asked: ChatMessage,
        recent: list[ChatMessage] | None,
        client_address: str = "",
        tools: tuple[ToolSpec, ...] = (),
        *,
        storing: bool = False,
    ) -> GenerationJob:
        """Write `reply` (stored, streaming) to `asked` in a task of its own, outside the caller's context
        (no deadline, no identity).

        `storing`: the exchange is still being stored (its commit's disk flush, 6 ms on PostgreSQL, then
        overlaps the prompt and the router's first token). Until `stored(job)` the answer is read from the model
        but none of it is shown or saved: its events are held, its lease is not renewed, its end waits. Should
        the exchange not be stored, `abandon(job)` drops it with nothing of it anywhere."""
        job = GenerationJob(reply, asked, recent, client_address, tools)

        def appended(event: ChatEvent, event_id: str) -> None:
            if isinstance(event, DeltaEvent):  # the checkpoint's text is rebuilt from here on (read by seq)
                job.last_event_id = event_id

        job.outbox = AnswerOutbox(self._streams, reply.conversation_id, self._lease, appended)
        if storing:
            job.stored = asyncio.get_running_loop().create_future()
            job.outbox.held = True
        self.jobs[reply.id] = job
        # Spawned from an empty context, so the task copies none of the caller's (its deadline, its identity).
        # Its span stays in the request's trace (tracing's own context is passed on explicitly).
        work = self._traced(job, tracing.current_context())
        job.task = contextvars.Context().run(self._tasks.spawn, work, name=f"generation {reply.id}")
        if self._stopping:  # stored while the process was stopping: it ends at once, as stopped
            job.task.cancel()
        return job

    def stored(self, job: GenerationJob) -> None:
        """Its exchange is in the database: the answer's events go out, its lease is renewed, its end saved."""
        if job.stored is not None and not job.stored.done():
            job.stored.set_result(True)
        if job.outbox is not None:
            job.outbox.release()

    def abandon(self, job: GenerationJob) -> None:
        """Its exchange was not stored: stop the answer and drop what it read (no event, no end saved)."""
        if job.stored is not None and not job.stored.done():
            job.stored.set_result(False)
        if job.task is not None:
            job.task.cancel()

    async def _wait_stored(self, job: GenerationJob) -> None:
        # Shielded: a cancellation of the job (a stopping process) leaves the exchange's outcome to come.
        if job.stored is not None and not await asyncio.shield(job.stored):
            raise _Abandoned

    def live(self, message: ChatMessage) -> ChatMessage:
        """A streaming reply written here with its text so far (not its last checkpoint); others as they are."""
        job = self.jobs.get(message.id) if message.state == STREAMING else None
        if job is None:
            return message
        return replace(message, text=job.text, last_seq=len(job.pieces) - 1)

    def cancel_local(self, message_id: uuid.UUID) -> GenerationJob | None:
        """Cancel a job of this process; None when it is not here."""
        job = self.jobs.get(message_id)
        if job is None or job.task is None:
            return None
        if job.ending:
            return job
        job.cancelled_by_member = True
        job.task.cancel()
        return job

    def _cancel_message(self, message: str) -> None:
        with contextlib.suppress(ValueError):
            self.cancel_local(uuid.UUID(message))

    async def request_cancel(self, message_id: uuid.UUID) -> None:
        """Ask whichever process owns the reply to stop it (its lease renewal sees the flag too)."""
        await self._leases.request_cancel(message_id)
        await self._feed.publish(CANCEL_CHANNEL, str(message_id))

    async def _traced(self, job: GenerationJob, parent: Any) -> None:
        with tracing.job("chat.answer", parent, **{"devpynode.message_id": str(job.reply.id)}):
            await self._run(job)

    async def _run(self, job: GenerationJob) -> None:
        reply, outbox = job.reply, job.outbox
        assert outbox is not None
        try:
            prompt = await self._prompts.prompt(reply, job.asked, job.recent)
            answer = self._completions.generate(reply.author_id, reply.model, prompt, job.client_address, job.tools)
            async with contextlib.aclosing(answer) as pieces:
                async for piece in pieces:
                    if outbox.lost is not None:
                        raise outbox.lost
                    if piece.text:
                        seq = job.add(piece.text)
                        outbox.put(DeltaEvent(str(reply.id), seq, piece.text))
                    if piece.finish_reason:
                        reply.finish_reason = piece.finish_reason
                        reply.prompt_tokens, reply.completion_tokens = piece.prompt_tokens, piece.completion_tokens
                        reply.model = piece.model or reply.model
                        reply.tool_calls = list(piece.tool_calls)
            await self._wait_stored(job)  # nothing of the answer is shown before its exchange is stored
            await outbox.drain()  # every delta is in the stream before the end is (or the outage failed it)
            if reply.finish_reason in FINISHED:
                reply.state = COMPLETE
            else:
                reply.state, reply.finish_reason = FAILED, ERROR
                reply.error = reply.error or "the model ended the answer with an error"
        except asyncio.CancelledError:
            if reply.finish_reason in FINISHED:  # the model had finished; only its events were pending
                reply.state = COMPLETE
            elif job.cancelled_by_member and not self._stopping:
                reply.state, reply.finish_reason = CANCELLED, CANCELLED
            else:
                reply.state, reply.finish_reason, reply.error = FAILED, ERROR, STOPPED
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the end is saved below; the cancellation was ours and is handled
        except _Abandoned:
            self._drop(job)
            return
        except DomainError as exc:
            reply.state, reply.finish_reason, reply.error = FAILED, ERROR, exc.message
        except Exception:
            log.exception("generation %s failed", reply.id)
            reply.state, reply.finish_reason, reply.error = FAILED, ERROR, "internal error while writing the answer"
        try:
            await self._wait_stored(job)  # an end is saved only for a stored reply
        except _Abandoned:
            self._drop(job)
            return
        except BaseException:
            self._drop(job)
            raise
        job.ending = True
        reply.text = job.text
        reply.last_seq = len(job.pieces) - 1
        if not reply.completion_tokens:
            reply.completion_tokens = len(job.pieces)
        try:
            await self._save_end(job, outbox)
        finally:
            self.jobs.pop(reply.id, None)
            job.finish()

    def _drop(self, job: GenerationJob) -> None:
        """An abandoned answer (its exchange was not stored): forgotten, its held events never sent."""
        self.jobs.pop(job.reply.id, None)
        job.finish()

    async def _save_end(self, job: GenerationJob, outbox: AnswerOutbox) -> None:
        reply = job.reply
        try:
            if not await self._leases.finish(self.owner, reply):
                log.warning("generation %s ended after its lease was taken; its end was not saved", reply.id)
                fresh = await self._messages.message(reply.id)
                if fresh is not None:
                    job.reply = fresh
                return
            self._ended(reply.state)
            outbox.put(MessageEvent(reply))  # after the deltas still queued
            await outbox.drain(STOP_SECONDS if self._stopping else None)
            await self._finished(reply)
        except DomainError as exc:  # saved in the database; the stream or a cache missed it
            log.warning("could not publish the end of generation %s: %s", reply.id, exc.message)

    async def renew(self) -> int:
        """Checkpoint every local job's text and renew its lease; stop those a member cancelled."""
        until = utcnow() + timedelta(seconds=self._lease)
        for message_id, job in list(self.jobs.items()):
            if job.done.is_set() or not job.is_stored:  # not stored yet: there is no lease row to renew
                continue
            ours, cancel = await self._leases.checkpoint(
                self.owner, message_id, job.text, len(job.pieces) - 1, job.last_event_id, until
            )
            if cancel or not ours:
                self.cancel_local(message_id)
        return 0

    async def sweep(self) -> int:
        """Fail every reply whose owner stopped renewing its lease (a crash, kill -9, a lost node)."""
        lost = await self._leases.expire_leases(utcnow(), LOST_OWNER)
        for reply in lost:
            self._ended(reply.state)
            await publish(self._streams, reply.conversation_id, MessageEvent(reply))
            await self._finished(reply)
        return len(lost)

    async def stop(self) -> None:
        """The process is stopping: end every local answer now, with all its text and the reason STOPPED, and
        wait (up to STOP_SECONDS each) for its end to be saved and published. Answers started from here on end
        at once the same way. Leases are still renewed meanwhile."""
        self._stopping = True
        for job in list(self.jobs.values()):
            if job.task is not None and not job.ending:
                job.task.cancel()
        running = [job.task for job in self.jobs.values() if job.task is not None]
        if running:
            await asyncio.wait(running, timeout=2 * STOP_SECONDS)

    async def close(self) -> None:
        """Stop renewing and sweeping, after ending what is still running (see `stop`)."""
        await self.stop()
        if self._subscription is not None:
            self._subscription.cancel()
        await self._tasks.close(STOP_SECONDS)
