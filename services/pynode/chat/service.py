"""Chat use cases: conversations, members, messages with AI replies, reactions, typing and live events.

Never imports grpc. Every use case starts from the caller's membership: a conversation the caller is not
a member of answers NotFound, exactly like a missing one. Every change is appended to the conversation's
event stream, which is what members (in any process) follow (subscriptions.py). AI replies are written by
the generation runner (generations.py) from the prompt prompts.py assembles.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pynode.chat.domain import (
    ASSISTANT,
    COMPLETE,
    STREAMING,
    TOOL,
    USER,
    Attachment,
    ChatEvent,
    ChatMessage,
    Conversation,
    ConversationDeleted,
    ConversationUpdated,
    Invitation,
    MemberAdded,
    MemberRemoved,
    MessageEvent,
    ReactionEvent,
    ReplyEvent,
    ToolSpec,
    TypingEvent,
    too_many_members,
)
from pynode.chat.events import publish, publish_all, stream_name
from pynode.chat.generations import GenerationRunner
from pynode.chat.membership import CachedConversations
from pynode.chat.ports import (
    AccountDirectory,
    AttachmentReader,
    Completions,
    ConversationRepository,
    InvitationRepository,
    MessageRepository,
)
from pynode.chat.recent import RecentMessages
from pynode.chat.subscriptions import Subscriptions
from pynode.core import tasks
from pynode.core.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from pynode.core.kv import KeyValueStore
from pynode.core.limits import FixedWindow, Quota
from pynode.core.paging import keyset_page
from pynode.core.principal import Principal
from pynode.core.streams import EventStreams
from pynode.core.text import plain_text_problem, reaction_problem
from pynode.core.timestamps import utcnow

log = logging.getLogger("pynode.chat")

# A renewal within this share of the typing time after the last one is absorbed: typing cannot flood
# the conversation's events.
TYPING_RENEW_SHARE = 0.3
CANCEL_WAIT_SECONDS = 10.0  # how long a cancel waits for another process to save the reply's end

# The per-user rates (fixed windows of a minute, core/limits.py): QuotaFailure subject and description.
CONVERSATIONS_QUOTA = Quota("chat:conversations", "new conversations per user per minute")
INVITES_QUOTA = Quota("chat:invites", "invitations per user per minute")
MESSAGES_QUOTA = Quota("chat:messages", "messages per user per minute")
REACTIONS_QUOTA = Quota("chat:reactions", "reactions per user per minute")


@dataclass(frozen=True)
class ChatLimits:
    """Sizes and rates from settings."""

    default_model: str
    max_members: int
    messages_per_minute: int
    invites_per_minute: int
    typing_seconds: float = 5.0
    streams_per_user: int = 16  # StreamEvents one user may hold open on one process
    conversations_per_minute: int = 30
    reactions_per_minute: int = 60  # added or removed, by one user


@dataclass(frozen=True)
class SentMessage:
    """What SendMessage produced: the member's message, and the AI reply it started (or had started)."""

    message: ChatMessage
    reply: ChatMessage | None
    reply_events: AsyncGenerator[ReplyEvent, None] | None  # its deltas then its end, written here or elsewhere


_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ToolResult:
    """A member's result of one of the model's tool calls."""

    tool_call_id: str
    content: str


def _tool_violations(tools: tuple[ToolSpec, ...]) -> list[FieldViolation]:
    out = []
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if not _TOOL_NAME.match(tool.name) or tool.name in names:
            out.append(FieldViolation(f"tools[{i}].name", "1 to 64 letters, digits, '_' or '-', each name once"))
        names.add(tool.name)
        try:
            schema = json.loads(tool.parameters or "{}")
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python parses
            schema = None
        if not isinstance(schema, dict):
            out.append(FieldViolation(f"tools[{i}].parameters_json", "must be a JSON Schema object as JSON text"))
    return out


def _not_found(conversation_id: object) -> NotFound:
    return NotFound(f"no conversation {conversation_id} of yours", reason="CONVERSATION_NOT_FOUND")


def _no_invitation(conversation_id: str) -> NotFound:
    return NotFound(f"no invitation of yours to conversation {conversation_id}", reason="INVITATION_NOT_FOUND")


def _uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{field} is not a UUID", [FieldViolation(field, "must be a UUID")]) from None


def _members_only(caller: Principal, conversation_id: str, found: Conversation | None) -> Conversation:
    """The conversation, to its members; to anyone else exactly like a missing one."""
    if found is None or caller.subject not in found.member_names:
        raise _not_found(conversation_id)
    return found


def _title(title: str) -> str:
    """A title as given, checked by the rule of every text shown to other members (core/text.py): the contract
    applies it at the edge too, this is what holds for any caller."""
    title = title.strip()
    problem = plain_text_problem(title)
    if problem is not None:
        raise InvalidArgument(
            "title must be plain text: no control, invisible or direction-changing characters",
            [FieldViolation("title", "must not contain control or invisible characters", problem)],
        )
    return title


class _HeldSend:
    """The sends of one client_request_id in flight in this process (see ChatService._sending)."""

    __slots__ = ("lock", "sends")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.sends = 0


class ChatService:
    """The chat service's use cases."""

    def __init__(
        self,
        conversations: ConversationRepository,
        messages: MessageRepository,
        invitations: InvitationRepository,
        cached: CachedConversations,
        recent: RecentMessages,
        streams: EventStreams,
        kv: KeyValueStore,
        runner: GenerationRunner,
        subscriptions: Subscriptions,
        peers: tuple[AttachmentReader, AccountDirectory, Completions],
        limits: ChatLimits,
    ) -> None:
        self._conversations = conversations
        self._messages = messages
        self.invitations = invitations
        self._cached = cached
        self._recent = recent
        self.streams = streams
        self._kv = kv
        self.runner = runner
        self.subscriptions = subscriptions
        self._attachments, self._accounts, self._completions = peers
        self.limits = limits
        self._rates = FixedWindow(kv)
        self._timers = tasks.TaskSet("chat-typing")  # each member's "stopped typing" at the end of its time
        # Sends of one client_request_id in this process, one at a time: a retry racing the first send waits for
        # it and gets its messages, instead of asking the model for an answer its exchange could not store.
        self._sending: dict[tuple[str, str, str], _HeldSend] = {}

    # --- membership -------------------------------------------------------------------------------

    async def _conversation(self, caller: Principal, conversation_id: str) -> Conversation:
        return _members_only(
            caller, conversation_id, await self._conversations.conversation(_uuid(conversation_id, "conversation_id"))
        )

    async def _member_of(self, caller: Principal, conversation_id: str) -> Conversation:
        """`_conversation` from the cache (a shared object: read it, never change it); for the hot path."""
        found = await self._cached.conversation(_uuid(conversation_id, "conversation_id"))
        return _members_only(caller, conversation_id, found)

    async def _owned(self, caller: Principal, conversation_id: str, what: str) -> Conversation:
        conversation = await self._conversation(caller, conversation_id)
        if conversation.owner_id != caller.subject:
            raise PermissionDenied(f"only the conversation's owner may {what}", reason="NOT_OWNER")
        return conversation

    async def _publish(self, conversation_id: uuid.UUID, event: ChatEvent) -> str:
        return await publish(self.streams, conversation_id, event)

    async def _limit(self, quota: Quota, caller: Principal, limit: int, what: str) -> None:
        """One hit on the caller's `quota` (its subject and the user make the key)."""
        key = f"{quota.subject}:{caller.subject}"
        await self._rates.hit(key, limit, quota, what=f"at most {limit} {what} per minute")

    # --- conversations ----------------------------------------------------------------------------

    async def _check_model(self, model: str) -> None:
        if model != self.limits.default_model and not await self._completions.known_model(model):
            raise InvalidArgument(
                f"the AI router has no model {model!r}; ListModels shows those it has",
                [FieldViolation("model", "not a model or alias the AI router lists", "UNKNOWN_MODEL")],
            )

    async def create(self, caller: Principal, title: str, model: str) -> Conversation:
        await self._limit(CONVERSATIONS_QUOTA, caller, self.limits.conversations_per_minute, "new conversations")
        model = model.strip() or self.limits.default_model
        await self._check_model(model)
        me = await self._accounts.enabled_user(user_id=caller.subject)
        names = {caller.subject: me.display_name if me is not None else ""}
        now = utcnow()
        conversation = Conversation(uuid.uuid4(), caller.subject, _title(title), model, now, now, member_names=names)
        await self._conversations.add_conversation(conversation)
        return conversation

    async def get(self, caller: Principal, conversation_id: str) -> Conversation:
        return await self._conversation(caller, conversation_id)

    async def conversations(self, caller: Principal, size: int, token: str) -> tuple[list[Conversation], str]:
        return await keyset_page(
            size,
            token,
            lambda before, n: self._conversations.conversations_of(caller.subject, before, n),
            lambda c: (c.updated_at, c.id),
        )

    async def update(
        self, caller: Principal, conversation_id: str, title: str | None, model: str | None
    ) -> Conversation:
        conversation = await self._owned(caller, conversation_id, "change it")
        if model is not None and not model.strip():
            raise InvalidArgument("model must not be empty", [FieldViolation("model", "give a model id")])
        title = _title(title) if title is not None else None
        model = model.strip() if model is not None else None
        if model is not None:
            await self._check_model(model)
        await self._conversations.update_conversation(conversation.id, title, model)
        await self._cached.changed(conversation.id)
        conversation.title = conversation.title if title is None else title
        conversation.model = conversation.model if model is None else model
        await self._publish(conversation.id, ConversationUpdated(conversation))
        return conversation

    async def delete(self, caller: Principal, conversation_id: str) -> None:
        conversation = await self._owned(caller, conversation_id, "delete it")
        streaming = await self._conversations.delete_conversation(conversation.id)
        await self._cached.changed(conversation.id)
        for message_id in streaming:
            if self.runner.cancel_local(message_id) is None:
                await self.runner.request_cancel(message_id)
        await self._publish(conversation.id, ConversationDeleted())

    # --- members ----------------------------------------------------------------------------------

    async def add_member(self, caller: Principal, conversation_id: str, user_id: str, email: str) -> Conversation:
        """Invite an account (by e-mail or id). The invitee joins only by accepting (consent), and until then
        nothing of them shows: the answer, the members and the events are the same whether or not the e-mail
        has an account. An unknown `user_id` is NotFound: ids are not guessable, only learned from a shared
        conversation, so that answer reveals nothing an e-mail lookup could."""
        if bool(user_id) == bool(email):
            raise InvalidArgument(
                "give exactly one of email and user_id",
                [FieldViolation("email", "give the e-mail of the account to add, or its user_id")],
            )
        conversation = await self._owned(caller, conversation_id, "add members")
        if len(conversation.member_names) >= self.limits.max_members:  # checked again on accepting
            raise too_many_members(self.limits.max_members)
        await self._limit(INVITES_QUOTA, caller, self.limits.invites_per_minute, "invitations")
        found = await self._accounts.enabled_user(email=email, user_id=user_id)
        if found is None:
            if email:
                return conversation
            raise NotFound(f"no account {user_id}", reason="USER_NOT_FOUND")
        await self.invitations.invite(conversation.id, found.user_id, found.display_name, caller.subject)
        return conversation

    async def pending_invitations(self, caller: Principal, size: int, token: str) -> tuple[list[Invitation], str]:
        """The caller's invitations not yet accepted or declined, newest first."""
        return await keyset_page(
            size,
            token,
            lambda before, n: self.invitations.invitations_of(caller.subject, before, n),
            lambda i: (i.created_at, i.conversation_id),
        )

    async def accept_invitation(self, caller: Principal, conversation_id: str) -> Conversation:
        """Join a conversation the caller is invited to; its members see them join."""
        key = _uuid(conversation_id, "conversation_id")
        if not await self.invitations.accept(key, caller.subject, self.limits.max_members):
            raise _no_invitation(conversation_id)
        await self._cached.changed(key)
        await self._publish(key, MemberAdded(caller.subject))
        return await self._conversation(caller, conversation_id)

    async def decline_invitation(self, caller: Principal, conversation_id: str) -> None:
        """Drop the caller's invitation; nobody is told."""
        if not await self.invitations.decline(_uuid(conversation_id, "conversation_id"), caller.subject):
            raise _no_invitation(conversation_id)

    async def remove_member(self, caller: Principal, conversation_id: str, user_id: str) -> None:
        conversation = await self._conversation(caller, conversation_id)
        if user_id == caller.subject:
            if conversation.owner_id == caller.subject:
                raise FailedPrecondition(
                    "the owner cannot leave their conversation; delete it instead", reason="OWNER_CANNOT_LEAVE"
                )
        elif conversation.owner_id != caller.subject:
            raise PermissionDenied("only the conversation's owner may remove other members", reason="NOT_OWNER")
        if not await self._conversations.remove_member(conversation.id, user_id):
            raise NotFound(f"{user_id} is not a member of this conversation", reason="MEMBER_NOT_FOUND")
        await self._cached.changed(conversation.id)
        await self._publish(conversation.id, MemberRemoved(user_id))

    # --- messages ---------------------------------------------------------------------------------

    async def send(
        self,
        caller: Principal,
        conversation_id: str,
        text: str,
        file_ids: list[str],
        client_request_id: str,
        client_address: str = "",
        *,
        tools: tuple[ToolSpec, ...] = (),
        results: tuple[ToolResult, ...] = (),
    ) -> SentMessage:
        """Store the member's message and start the AI reply to it (`client_address`, the member's, goes with
        the reply to the AI router). A retry with the same `client_request_id` gets the first one's. With
        `results` (of the last reply's tool calls) the member's messages are those results, one each; `tools`
        are what the model may call in this reply."""
        if results and (text.strip() or file_ids):
            raise InvalidArgument(
                "tool results go without text or attachments; send those in a message of their own",
                [FieldViolation("tool_results", "send either text (and attachments) or tool results")],
            )
        if not results and not text.strip():
            raise InvalidArgument("text must not be blank", [FieldViolation("text", "write something")])
        violations = _tool_violations(tools)
        if violations:
            raise InvalidArgument("tools are not valid: " + "; ".join(v.field for v in violations), violations)
        # The prompt's newest history (recent.py: cached while current) is read alongside the membership check
        # and the insert below (it is only used, and so only seen, once the caller is known to be a member and
        # the exchange is stored): the first token comes that much sooner. The prompt skips the new exchange
        # should the read see it.
        # So is the stream's newest event id, where the reply's deltas start: read earlier than strictly needed,
        # it is at most older, and a late subscriber then skips a few more events of others (they are filtered by
        # message id and seq).
        key = _uuid(conversation_id, "conversation_id")
        reads = (
            asyncio.ensure_future(self._recent.newest(key)),
            asyncio.ensure_future(self.streams.last_id(stream_name(key))),
        )
        try:
            async with self._one_send(conversation_id, caller.subject, client_request_id):
                return await self._send(
                    caller, conversation_id, text, file_ids, client_request_id, client_address, reads, tools, results
                )
        finally:
            for read in reads:
                if not read.done():
                    read.cancel()
                elif not read.cancelled():
                    read.exception()  # retrieved when the send failed before awaiting it: nobody else will

    @contextlib.asynccontextmanager
    async def _one_send(self, conversation_id: str, author_id: str, client_request_id: str) -> AsyncIterator[None]:
        """Hold the send of (conversation, author, client_request_id) while it runs (see `_sending`)."""
        if not client_request_id:
            yield
            return
        key = (conversation_id, author_id, client_request_id)
        held = self._sending.setdefault(key, _HeldSend())
        held.sends += 1
        try:
            async with held.lock:
                yield
        finally:
            held.sends -= 1
            if not held.sends:  # the last one out
                del self._sending[key]

    async def _send(
        self,
        caller: Principal,
        conversation_id: str,
        text: str,
        file_ids: list[str],
        client_request_id: str,
        client_address: str,
        reads: tuple[asyncio.Future[list[ChatMessage]], asyncio.Future[str]],
        tools: tuple[ToolSpec, ...] = (),
        results: tuple[ToolResult, ...] = (),
    ) -> SentMessage:
        conversation = await self._member_of(caller, conversation_id)
        if client_request_id:
            earlier = await self._messages.by_request_id(conversation.id, caller.subject, client_request_id)
            if earlier is not None:
                return self._retried(*earlier)
        await self._limit(MESSAGES_QUOTA, caller, self.limits.messages_per_minute, "messages")
        attachments = await self._check_attachments(file_ids)
        now = utcnow()
        earlier_results: list[ChatMessage] = []
        if results:
            await self._check_results(conversation.id, results)
            posted = [
                ChatMessage(
                    uuid.uuid4(), conversation.id, TOOL, caller.subject, r.content, COMPLETE,
                    now + timedelta(microseconds=i), tool_call_id=r.tool_call_id,
                )
                for i, r in enumerate(results)
            ]  # fmt: skip
            for result in posted[:-1]:
                await self._messages.add_exchange(result, None)
            earlier_results = posted[:-1]
            message = replace(posted[-1], client_request_id=client_request_id or None)
            now = message.created_at
        else:
            message = ChatMessage(
                uuid.uuid4(), conversation.id, USER, caller.subject, text, COMPLETE, now,
                attachments=attachments, client_request_id=client_request_id or None,
            )  # fmt: skip
        recent_read, start_read = reads
        # Deltas of the reply come after this id: a late subscriber rebuilds its text from here on.
        start = await start_read
        reply = ChatMessage(
            uuid.uuid4(), conversation.id, ASSISTANT, caller.subject, "", STREAMING, now + timedelta(microseconds=1),
            model=conversation.model, reply_to_id=message.id, checkpoint_event_id=start,
        )  # fmt: skip
        try:
            recent: list[ChatMessage] | None = await recent_read
        except DomainError:
            recent = None  # the prompt reads the history itself (and fails the answer if it still cannot)
        if earlier_results:
            recent = None  # read ahead before they were stored: the prompt reads the history itself
        # Started while the exchange is being stored: the prompt and the router's first token overlap its commit
        # (the disk flush of a durable commit, 6 ms on PostgreSQL here). Nothing of the answer is shown or saved
        # until the exchange is stored; when it is not, the answer is dropped unseen.
        job = self.runner.start(reply, message, recent, client_address, tools, storing=True)
        try:
            added = await self._messages.add_exchange(message, reply)
        except BaseException:
            self.runner.abandon(job)
            raise
        if not added:
            self.runner.abandon(job)
            earlier = await self._messages.by_request_id(conversation.id, caller.subject, client_request_id)
            if earlier is None:
                raise FailedPrecondition("the conversation is gone", reason="CONVERSATION_NOT_FOUND")
            return self._retried(*earlier)
        # The member sees the reply's first delta only after these: the history's new version and the exchange's
        # events (one round trip for them all, in order) go at once, on their separate connections. The answer's
        # own events follow the exchange's in the stream: its outbox is released once those are in.
        stored = [*earlier_results, message, reply]
        try:
            outcomes = await asyncio.gather(
                self._recent.changed(conversation.id, stored),
                publish_all(self.streams, conversation.id, [MessageEvent(m) for m in stored]),
                return_exceptions=True,
            )
        finally:
            self.runner.stored(job)  # stored, whatever the publishing did: the answer goes on and its end is saved
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return SentMessage(message, reply, job.events())

    async def _check_results(self, conversation_id: uuid.UUID, results: tuple[ToolResult, ...]) -> None:
        """Results answer calls of the conversation's last AI reply, each call at most once."""
        newest = await self._messages.messages(conversation_id, None, 50)
        last = next((m for m in newest if m.role == ASSISTANT), None)
        calls = {c.id for c in last.tool_calls} if last is not None and last.state != STREAMING else set()
        violations = []
        seen: set[str] = set()
        for i, result in enumerate(results):
            if result.tool_call_id not in calls or result.tool_call_id in seen:
                violations.append(
                    FieldViolation(
                        f"tool_results[{i}].tool_call_id", "must name a call of the last AI reply, once", "INVALID"
                    )
                )
            seen.add(result.tool_call_id)
        if violations:
            raise InvalidArgument("tool results must answer the last AI reply's tool calls", violations)

    def _retried(self, message: ChatMessage, reply: ChatMessage | None) -> SentMessage:
        return SentMessage(message, reply, self.subscriptions.reply(reply) if reply is not None else None)

    async def _check_attachments(self, file_ids: list[str]) -> list[Attachment]:
        found: list[Attachment] = []
        violations = []
        for i, file_id in enumerate(file_ids):
            try:
                found.append(await self._attachments.attachment(file_id))
            except NotFound:
                violations.append(FieldViolation(f"attachment_file_ids[{i}]", "no such file of yours"))
        if violations:
            raise InvalidArgument("attachments must be files you uploaded", violations)
        if len({a.file_id for a in found}) != len(found):
            raise InvalidArgument(
                "a file is attached twice", [FieldViolation("attachment_file_ids", "each file at most once")]
            )
        return found

    async def messages(
        self, caller: Principal, conversation_id: str, size: int, token: str
    ) -> tuple[list[ChatMessage], str]:
        conversation = await self._conversation(caller, conversation_id)
        page, next_token = await keyset_page(
            size,
            token,
            lambda before, n: self._messages.messages(conversation.id, before, n),
            lambda m: (m.created_at, m.id),
            maximum=200,
        )
        return [self.runner.live(m) for m in page], next_token

    async def _message_in(self, conversation: Conversation, message_id: str) -> ChatMessage:
        message = await self._messages.message(_uuid(message_id, "message_id"))
        if message is None or message.conversation_id != conversation.id:
            raise NotFound(f"no message {message_id} in this conversation", reason="MESSAGE_NOT_FOUND")
        return message

    async def cancel(self, caller: Principal, conversation_id: str, message_id: str) -> ChatMessage:
        conversation = await self._conversation(caller, conversation_id)
        message = await self._message_in(conversation, message_id)
        if message.role != ASSISTANT:
            raise FailedPrecondition("only an AI reply can be cancelled", reason="NOT_A_GENERATION")
        if message.state != STREAMING:
            return message
        job = self.runner.cancel_local(message.id)
        if job is not None:
            await job.done.wait()
            return job.reply
        # Another process writes it: it sees the request (pub/sub, or its next lease renewal), saves the end
        # and appends it to the conversation's stream, which is where the end is learnt here (no polling).
        await self.runner.request_cancel(message.id)
        ended = await self.subscriptions.end_of(message, CANCEL_WAIT_SECONDS)
        return ended or message

    # --- reactions and typing ---------------------------------------------------------------------

    async def react(
        self, caller: Principal, conversation_id: str, message_id: str, emoji: str, present: bool
    ) -> dict[str, set[str]]:
        # Removing checks only the shape: a reaction stored before the rule below can still be taken back.
        if not emoji.strip() or any(c.isspace() for c in emoji):
            raise InvalidArgument("emoji must be one emoji, without spaces", [FieldViolation("emoji", "one emoji")])
        if present and (problem := reaction_problem(emoji)) is not None:
            raise InvalidArgument(
                "a reaction is one emoji or a short word like +1, without invisible or control characters",
                [FieldViolation("emoji", "one emoji, or up to 16 letters, digits and + - _ :", problem)],
            )
        conversation = await self._conversation(caller, conversation_id)
        message = await self._message_in(conversation, message_id)
        # Every reaction is an event to every member: a flood of them would push real events out of the
        # bounded stream (reconnecting members would have to reload). Counted before the write, removals too.
        await self._limit(REACTIONS_QUOTA, caller, self.limits.reactions_per_minute, "reactions")
        changed = await self._messages.set_reaction(message.id, caller.subject, emoji, present)
        reactions = await self._messages.reactions(message.id)
        if changed:
            event = ReactionEvent(str(message.id), caller.subject, emoji, present, reactions)
            await self._publish(conversation.id, event)
        return reactions

    async def typing(self, caller: Principal, conversation_id: str, typing: bool) -> None:
        conversation = await self._conversation(caller, conversation_id)
        key = f"chat:typing:{conversation.id}:{caller.subject}"
        if not typing:
            if await self._kv.delete(key):
                await self._publish(conversation.id, TypingEvent(caller.subject, typing=False))
            return
        now = utcnow()
        current = await self._kv.get(key)
        seconds = self.limits.typing_seconds
        if current is not None and datetime.fromisoformat(current) - now > timedelta(
            seconds=seconds * (1 - TYPING_RENEW_SHARE)
        ):
            return
        # A start at most once per renewal share (claimed atomically, whichever process): alternating
        # SendTyping true/false otherwise publishes two events per pair, hundreds a second to every member.
        # A start inside the window is coalesced silently (typing is a hint, not worth an error a client must
        # handle): the member shows as typing from their next renewal. The stop of a shown start is always said.
        start_key = f"chat:typing-started:{conversation.id}:{caller.subject}"
        if current is None and not await self._kv.compare_and_set(start_key, None, "1", seconds * TYPING_RENEW_SHARE):
            return
        expires = (now + timedelta(seconds=seconds)).isoformat()
        await self._kv.set(key, expires, seconds * 3)
        await self._publish(conversation.id, TypingEvent(caller.subject, typing=True, expires_at=expires))
        self._timers.spawn(self._typing_expires(conversation.id, caller.subject, expires), name="typing expiry")

    async def _typing_expires(self, conversation_id: uuid.UUID, user_id: str, expires: str) -> None:
        await asyncio.sleep(self.limits.typing_seconds)
        key = f"chat:typing:{conversation_id}:{user_id}"
        try:
            # Only the latest renewal's timer says "stopped" (a renewal in another process replaced the value).
            if await self._kv.compare_and_set(key, expires, None):
                await self._publish(conversation_id, TypingEvent(user_id, typing=False))
        except DomainError as exc:
            log.warning("typing expiry not published: %s", exc.message)

    # --- events -----------------------------------------------------------------------------------

    async def events(
        self, caller: Principal, conversation_id: str, after: str, address: str = ""
    ) -> AsyncGenerator[ChatEvent, None]:
        """Every change of the conversation after `after` (or from now, with the replies being written),
        until the caller is removed or the conversation is deleted; `address` is the client's, for its share."""
        conversation = await self._conversation(caller, conversation_id)
        followed = self.subscriptions.events(caller.subject, conversation, after, address)
        async with contextlib.aclosing(followed) as events:
            async for event in events:
                yield event

    # --- attachments --------------------------------------------------------------------------------

    async def attachment(
        self, caller: Principal, conversation_id: str, message_id: str, file_id: str
    ) -> AsyncGenerator[Attachment | bytes, None]:
        """An attachment's metadata then bytes, read from files for the message's author."""
        conversation = await self._conversation(caller, conversation_id)
        message = await self._message_in(conversation, message_id)
        if file_id not in {a.file_id for a in message.attachments}:
            raise NotFound(f"no attachment {file_id} on this message", reason="ATTACHMENT_NOT_FOUND")
        return self._attachments.read(file_id, message.author_id)

    async def close(self) -> None:
        await self._timers.close(0)
