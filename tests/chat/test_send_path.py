"""SendMessage's path to the AI router: the member's address goes with the answer, a time-limited answer is told
apart from a finished one, and a failed send leaves no unretrieved read-ahead behind."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from devpynode.chat.v1 import chat_pb2

from pynode.chat.adapters.grpc_completions import _FINISH
from pynode.chat.domain import COMPLETE, TIME_LIMIT
from pynode.chat.events import stream_name
from pynode.core.errors import NotFound, Unavailable
from pynode.core.principal import Principal
from tests.ai.fakes import FakeProvider
from tests.chat.conftest import WORDS, Start


async def test_the_ai_router_is_given_the_members_address(chat: Start) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create()
    completions: Any = alice.parts.runner._completions
    original = completions.generate
    addresses: list[str] = []

    def generate(
        user_id: str, model: str, messages: Any, client_address: str = "", tools: Any = ()
    ) -> AsyncGenerator[Any, None]:
        addresses.append(client_address)
        result: AsyncGenerator[Any, None] = original(user_id, model, messages, client_address, tools)
        return result

    completions.generate = generate
    sent = await alice.send(conversation.id)
    assert sent.reply.state == chat_pb2.MESSAGE_STATE_COMPLETE
    assert addresses == [alice.user.address]  # as the chat edge saw it (the trusted proxy's x-forwarded-for)


async def test_an_answer_cut_at_the_routers_time_limit_is_kept_and_said_so(chat: Start, ollama: FakeProvider) -> None:
    assert _FINISH[5] == TIME_LIMIT  # ai FINISH_REASON_TIME_LIMIT
    (alice,) = await chat(1, ai_max_generation_seconds=0.3)
    ollama.script.delay = 0.2  # twelve words: far past the router's limit
    conversation = await alice.create()
    sent = await alice.send(conversation.id)
    reply = sent.reply
    assert reply.state == chat_pb2.MESSAGE_STATE_COMPLETE and reply.text
    assert reply.finish_reason == chat_pb2.FINISH_REASON_LENGTH  # cut short, not a finished answer
    stored = await alice.parts.messages.message(uuid.UUID(reply.id))
    assert stored is not None and stored.state == COMPLETE and stored.finish_reason == TIME_LIMIT


async def test_a_send_that_fails_retrieves_its_failed_read_ahead(chat: Start) -> None:
    (alice,) = await chat(1)
    service: Any = alice.parts.service

    async def newest(conversation_id: uuid.UUID) -> list[Any]:
        raise Unavailable("the database is down")

    service._recent.newest = newest
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))
    try:
        caller = Principal(alice.id, "user")
        with pytest.raises(NotFound):  # no such conversation: NotFound, once the read ahead has failed
            await service.send(caller, str(uuid.uuid4()), "hello", [], "")
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert not [c for c in unretrieved if "never retrieved" in str(c.get("message"))], unretrieved


async def test_an_exchange_committed_without_the_flush_is_stored_as_any_other(chat: Start) -> None:
    """DEVPYNODE_CHAT_FAST_EXCHANGE_COMMIT: the exchange's one statement turns synchronous_commit off for itself
    (PostgreSQL; SQLite ignores the setting); the member's message, the reply and the conversation's time are
    stored all the same, and a retry with the same client_request_id still gets the first one's."""
    (alice,) = await chat(1, chat_fast_exchange_commit=True)
    conversation = await alice.create()
    sent = await alice.send(conversation.id)
    assert sent.reply.state == chat_pb2.MESSAGE_STATE_COMPLETE
    stored = await alice.parts.messages.message(uuid.UUID(sent.reply.id))
    assert stored is not None and stored.state == COMPLETE and stored.text == sent.reply.text
    found = await alice.parts.service._conversations.conversation(uuid.UUID(conversation.id))
    assert found is not None and found.updated_at > found.created_at  # touched by the same statement


async def _holding_the_exchange(alice: Any, then: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    """Make the exchange's store wait until its answer has read a piece of the model's text, then `then()`;
    returns what was seen meanwhile (the stream's newest event id, before and while held)."""
    service: Any = alice.parts.service
    messages = service._messages
    original = messages.add_exchange
    seen: dict[str, Any] = {}

    async def add_exchange(message: Any, reply: Any) -> bool:
        stream = stream_name(message.conversation_id)
        seen["before"] = await service.streams.last_id(stream)
        job = alice.parts.runner.jobs[reply.id]  # started before the exchange is stored

        async def first_piece() -> None:
            async for _ in job.deltas():
                return

        await asyncio.wait_for(first_piece(), 30)
        seen["pieces"] = list(job.pieces)
        seen["while_held"] = await service.streams.last_id(stream)
        seen["in_database"] = await messages.message(reply.id)
        await then()
        return bool(await original(message, reply))

    messages.add_exchange = add_exchange
    return seen


async def test_the_answer_starts_while_its_exchange_is_being_stored(chat: Start) -> None:
    """Issue 25: the model is asked while the exchange commits (a durable commit's disk flush), and nothing of
    the answer is shown before the exchange is stored."""
    (alice,) = await chat(1)
    conversation = await alice.create()

    async def nothing() -> None:
        return None

    seen = await _holding_the_exchange(alice, nothing)
    sent = await alice.send(conversation.id)
    assert seen["pieces"]  # the model's text came while the exchange was still being stored
    assert seen["while_held"] == seen["before"]  # and none of it (nor the exchange) was in the event stream
    assert seen["in_database"] is None
    assert sent.reply.state == chat_pb2.MESSAGE_STATE_COMPLETE
    assert "".join(d.text for d in sent.deltas) == sent.reply.text == "".join(WORDS)
    stored = await alice.parts.messages.message(uuid.UUID(sent.reply.id))
    assert stored is not None and stored.state == COMPLETE and stored.text == sent.reply.text


async def test_an_exchange_that_is_not_stored_leaves_nothing_of_its_answer(chat: Start) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create()

    async def outage() -> None:
        raise Unavailable("the database is down")

    seen = await _holding_the_exchange(alice, outage)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await alice.send(conversation.id)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    runner = alice.parts.runner
    for _ in range(300):  # the dropped answer's task ends once its cancellation lands
        if not runner.jobs:
            break
        await asyncio.sleep(0.01)
    assert not runner.jobs
    service: Any = alice.parts.service
    assert await service.streams.last_id(stream_name(uuid.UUID(conversation.id))) == seen["before"]
    assert await alice.messages(conversation.id) == []  # neither the member's message nor the reply
