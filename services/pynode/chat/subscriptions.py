"""Following a conversation: its live events, the snapshot of replies being written, one reply to its end, and
the per-user cap on event streams held open.

Every change of a conversation is an event in its stream (events.py), which members in any process follow. A
subscription from a position reads the backlog once and follows from its last event; one from now says
`Ready`, then shows each streaming reply as of that moment (its checkpoint plus the deltas kept since). A reply
written by this process is followed from memory; one written by another process, from the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import replace

from pynode.chat.domain import (
    STREAMING,
    ChatEvent,
    ChatMessage,
    Conversation,
    ConversationDeleted,
    DeltaEvent,
    MemberRemoved,
    MessageEvent,
    Ready,
    Reload,
    ReplyEvent,
)
from pynode.chat.events import decode, stream_name
from pynode.chat.generations import GenerationRunner
from pynode.chat.ports import MessageRepository
from pynode.core.limits import Quota, Slots
from pynode.core.streams import EventStreams, event_key

STREAMS_QUOTA = Quota("chat:streams_per_user", "StreamEvents open at once per user", "TOO_MANY_STREAMS")
ADDRESS_STREAMS_QUOTA = Quota(
    "chat:streams_per_address", "StreamEvents open at once per client address", "TOO_MANY_STREAMS"
)


def _ends(event: ChatEvent, subscriber: str) -> bool:
    """Whether a subscription ends with this event: the conversation is gone, or the subscriber left it."""
    return isinstance(event, ConversationDeleted) or (isinstance(event, MemberRemoved) and event.user_id == subscriber)


class Subscriptions:
    """Conversations' events as members follow them, from any process."""

    def __init__(
        self,
        messages: MessageRepository,
        streams: EventStreams,
        runner: GenerationRunner,
        streams_per_user: int,
        streams_per_address: int = 0,
    ) -> None:
        self._messages = messages
        self._streams = streams
        self._runner = runner
        self._slots = Slots(
            streams_per_user,
            STREAMS_QUOTA,
            f"at most {streams_per_user} event streams at once per user; close some (one per tab is enough: a "
            "stream follows one conversation)",
        )
        # A user's cap alone let one address hold as many streams as it made accounts.
        self._addresses = Slots(
            streams_per_address,
            ADDRESS_STREAMS_QUOTA,
            f"at most {streams_per_address} event streams at once from one address, whatever the account",
        )

    @property
    def subscribers(self) -> int:
        """Event streams open on this process."""
        return self._slots.held()

    async def events(
        self, subscriber: str, conversation: Conversation, after: str, address: str = ""
    ) -> AsyncGenerator[ChatEvent, None]:
        """Every change of the conversation after `after` (or from now), until the subscriber is removed or the
        conversation is deleted; holds one of the subscriber's stream slots, and one of its client address's
        (when known), meanwhile."""
        with (
            self._slots.hold(subscriber),
            self._addresses.hold(address) if address else contextlib.nullcontext(),
        ):
            async with contextlib.aclosing(self._follow(subscriber, conversation, after)) as events:
                async for event in events:
                    yield event

    async def _follow(self, subscriber: str, conversation: Conversation, after: str) -> AsyncGenerator[ChatEvent, None]:
        stream = stream_name(conversation.id)
        position = ""
        if after:
            event_key(after)
            backlog = await self._streams.read_after(stream, after)
            if backlog.trimmed:
                yield Reload(await self._streams.last_id(stream))
            else:
                position = after
                for raw in backlog.events:  # read once: following starts after the last of them
                    event = decode(raw.id, raw.payload)
                    position = raw.id
                    if event is None:
                        continue
                    yield event
                    if _ends(event, subscriber):
                        return
        if not position:
            position = await self._streams.last_id(stream)
            yield Ready(position)
            for reply in await self._messages.streaming(conversation.id):
                yield MessageEvent(await self._snapshot(stream, reply, position), position)
        async for batch in self._streams.follow(stream, position):
            for raw in batch:
                event = decode(raw.id, raw.payload)
                if event is None:
                    continue
                yield event
                if _ends(event, subscriber):
                    return

    async def _snapshot(self, stream: str, reply: ChatMessage, until: str) -> ChatMessage:
        """A streaming reply as of event `until`: its checkpoint plus the deltas kept since."""
        pieces = [reply.text]
        seq = reply.last_seq
        backlog = await self._streams.read_after(stream, reply.checkpoint_event_id, until)
        reply_id = str(reply.id)
        for raw in backlog.events:
            match decode(raw.id, raw.payload):
                case DeltaEvent(message_id=message_id, seq=delta_seq, text=text) if message_id == reply_id:
                    if delta_seq == seq + 1:
                        pieces.append(text)
                        seq += 1
                case MessageEvent(message=message) if message.id == reply.id and message.state != STREAMING:
                    return message
        return replace(reply, text="".join(pieces), last_seq=seq)

    def reply(self, reply: ChatMessage) -> AsyncGenerator[ReplyEvent, None]:
        """A reply's deltas then its end, wherever it is written: from memory when here, else from the stream."""
        job = self._runner.jobs.get(reply.id)
        return job.events() if job is not None else self._follow_reply(reply)

    async def _follow_reply(self, reply: ChatMessage) -> AsyncGenerator[ReplyEvent, None]:
        """Deltas then the end of a reply written by another process (a retried SendMessage); nothing more when
        the conversation is deleted meanwhile."""
        current = await self._messages.message(reply.id)
        if current is None:
            return
        if current.state != STREAMING:
            yield MessageEvent(current)
            return
        reply_id = str(reply.id)
        if current.text:
            yield DeltaEvent(reply_id, current.last_seq, current.text)
        seq = current.last_seq
        stream = stream_name(reply.conversation_id)
        async for batch in self._streams.follow(stream, current.checkpoint_event_id):
            for raw in batch:
                match decode(raw.id, raw.payload):
                    case DeltaEvent(message_id=message_id) as delta if message_id == reply_id:
                        if delta.seq > seq:
                            seq = delta.seq
                            yield delta
                    case MessageEvent(message=message) as end if message.id == reply.id:
                        if message.state != STREAMING:
                            yield end
                            return
                    case ConversationDeleted():
                        return

    async def end_of(self, reply: ChatMessage, seconds: float) -> ChatMessage | None:
        """The reply once it has ended, learnt from its final event (or from the database when it had ended
        already); None when the conversation went first, or `seconds` passed without an end."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                async with contextlib.aclosing(self.reply(reply)) as events:
                    async for event in events:
                        if isinstance(event, MessageEvent):
                            return event.message
        return None
