"""Chat fixtures: a mesh whose AI router answers from a scripted Ollama on loopback, and signed-in members."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from devpynode.chat.v1 import chat_pb2, chat_pb2_grpc

from pynode.app.server import MeshServer
from pynode.chat.module import ChatComponents
from tests.ai.fakes import FakeProvider
from tests.client import MeshClient, eventually

MODEL = "ollama/llama3.2:latest"
WORDS = [f" w{i}" for i in range(12)]
ANSWER = "".join(WORDS)


@dataclass
class Sent:
    """A SendMessage stream as the client saw it."""

    responses: list[chat_pb2.SendMessageResponse] = field(default_factory=list)

    @property
    def user_message(self) -> chat_pb2.Message:
        assert self.responses[0].WhichOneof("event") == "user_message"
        return self.responses[0].user_message

    @property
    def deltas(self) -> list[chat_pb2.Delta]:
        return [r.delta for r in self.responses if r.WhichOneof("event") == "delta"]

    @property
    def reply(self) -> chat_pb2.Message:
        assert self.responses[-1].WhichOneof("event") == "assistant_message"
        return self.responses[-1].assistant_message


@dataclass
class Member:
    """A signed-in account with the chat stub."""

    user: MeshClient
    mesh: MeshServer
    id: str = ""
    email: str = ""

    @property
    def stub(self) -> chat_pb2_grpc.ChatServiceStub:
        return chat_pb2_grpc.ChatServiceStub(self.user.channel)

    @property
    def md(self) -> list[tuple[str, str]]:
        return self.user.md()

    @property
    def parts(self) -> ChatComponents:
        component = self.mesh.platform.component("chat")
        assert isinstance(component, ChatComponents)
        return component

    async def create(self, title: str = "", model: str = MODEL) -> chat_pb2.Conversation:
        response = await self.stub.CreateConversation(
            chat_pb2.CreateConversationRequest(title=title, model=model), metadata=self.md
        )
        return response.conversation

    def send_call(self, conversation_id: str, text: str = "hello", **fields: Any) -> Any:
        request = chat_pb2.SendMessageRequest(conversation_id=conversation_id, text=text, **fields)
        return self.stub.SendMessage(request, metadata=self.md, timeout=30)

    async def send(self, conversation_id: str, text: str = "hello", **fields: Any) -> Sent:
        sent = Sent()
        async for response in self.send_call(conversation_id, text, **fields):
            sent.responses.append(response)
        return sent

    def events(self, conversation_id: str, after: str = "") -> Any:
        request = chat_pb2.StreamEventsRequest(conversation_id=conversation_id, after=after)
        return self.stub.StreamEvents(request, metadata=self.md, timeout=60)

    async def messages(self, conversation_id: str) -> list[chat_pb2.Message]:
        response = await self.stub.ListMessages(
            chat_pb2.ListMessagesRequest(conversation_id=conversation_id), metadata=self.md
        )
        return list(response.messages)

    async def invite(self, conversation_id: str, other: Member) -> None:
        """Invite `other` by e-mail, and have them accept (an invitation alone makes nobody a member)."""
        await self.stub.AddMember(
            chat_pb2.AddMemberRequest(conversation_id=conversation_id, email=other.email), metadata=self.md
        )
        await other.stub.AcceptInvitation(
            chat_pb2.AcceptInvitationRequest(conversation_id=conversation_id), metadata=other.md
        )


Start = Callable[..., Awaitable[list[Member]]]


@pytest.fixture
async def ollama() -> AsyncIterator[FakeProvider]:
    fake = await FakeProvider("ollama").start()
    fake.script.tokens = list(WORDS)
    yield fake
    await fake.stop()


@pytest.fixture
def chat(strict: Any, ollama: FakeProvider) -> Start:
    """Start a mesh whose Ollama is the fake; returns `members` signed-in accounts on it."""

    async def start(members: int = 2, **overrides: Any) -> list[Member]:
        values = {"ollama_url": ollama.url, "ai_requests_per_minute": 1000, **overrides}
        first: MeshClient = await strict(**values)
        return await join(first.channel, strict.servers[-1], members)

    return start


async def join(channel: grpc.aio.Channel, mesh: MeshServer, count: int) -> list[Member]:
    """`count` new accounts signed in through `channel`."""
    found = []
    for _ in range(count):
        user = MeshClient(channel)
        email = f"member-{uuid.uuid4().hex[:10]}@example.com"
        registered = await user.register(email)
        found.append(Member(user, mesh, registered.user.id, email))
    return found


class Subscriber:
    """A StreamEvents call read in the background into `events`."""

    def __init__(self, member: Member, conversation_id: str, after: str = "") -> None:
        self.call = member.events(conversation_id, after)
        self.events: list[chat_pb2.StreamEventsResponse] = []
        self.error: grpc.aio.AioRpcError | None = None
        self.ended = False
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for event in self.call:
                self.events.append(event)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self.error = error
        self.ended = True

    def kinds(self) -> list[str]:
        return [str(e.WhichOneof("event")) for e in self.events]

    def of(self, kind: str) -> list[Any]:
        return [getattr(e, kind) for e in self.events if e.WhichOneof("event") == kind]

    def final(self, message_id: str) -> chat_pb2.Message | None:
        done = [m for m in self.of("message") if m.id == message_id and m.state != chat_pb2.MESSAGE_STATE_STREAMING]
        return done[-1] if done else None

    async def ready(self) -> str:
        await eventually(lambda: bool(self.events))
        first = self.events[0]
        assert first.WhichOneof("event") in ("ready", "reload"), first
        return first.id

    async def stop(self) -> None:
        self.call.cancel()
        await asyncio.wait([self._task])


def reply_text(events: list[chat_pb2.StreamEventsResponse], message_id: str) -> tuple[str, list[int]]:
    """A reply as a subscriber rebuilds it: the snapshot's text then each delta; and the seqs seen."""
    text = ""
    seqs: list[int] = []
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "message" and event.message.id == message_id and event.message.state == 1 and event.message.text:
            text = event.message.text
            seqs = list(range(event.message.last_seq + 1))
        elif kind == "delta" and event.delta.message_id == message_id:
            text += event.delta.text
            seqs.append(event.delta.seq)
    return text, seqs
