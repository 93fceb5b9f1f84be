"""SendMessage and history: the stream's shape, idempotent retries, titles, failures and cancellation."""

from __future__ import annotations

import asyncio

import grpc
from devpynode.ai.v1 import ai_pb2, ai_pb2_grpc
from devpynode.chat.v1 import chat_pb2

from tests.ai.fakes import FakeProvider
from tests.chat.conftest import ANSWER, WORDS, Start
from tests.client import eventually, fails


async def test_a_message_streams_its_answer_in_new_text_only_then_the_whole_reply(
    chat: Start, ollama: FakeProvider
) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create()
    sent = await alice.send(conversation.id, "tell me something")
    kinds = [r.WhichOneof("event") for r in sent.responses]
    assert kinds[0] == "user_message" and kinds[-1] == "assistant_message"
    assert set(kinds[1:-1]) == {"delta"}
    assert sent.user_message.text == "tell me something" and sent.user_message.author_id == alice.id
    # Each delta carries only its own new text, numbered from 0, for the reply being written (the router
    # coalesces tokens that arrive faster than they are read, so there may be fewer deltas than tokens).
    assert [d.seq for d in sent.deltas] == list(range(len(sent.deltas)))
    assert "".join(d.text for d in sent.deltas) == ANSWER and 1 <= len(sent.deltas) <= len(WORDS)
    assert {d.message_id for d in sent.deltas} == {sent.reply.id}
    reply = sent.reply
    assert reply.state == chat_pb2.MESSAGE_STATE_COMPLETE and reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    assert reply.text == ANSWER and reply.role == chat_pb2.MESSAGE_ROLE_ASSISTANT
    assert reply.usage.completion_tokens == len(WORDS) and reply.usage.prompt_tokens == 11
    assert reply.model == "ollama/llama3.2:latest" and reply.reply_to_id == sent.user_message.id
    # The model saw the conversation's history, the new message last.
    body = ollama.chats[-1].body
    assert body is not None and body["messages"][-1] == {"role": "user", "content": "tell me something"}

    history = await alice.messages(conversation.id)
    assert [m.id for m in history] == [reply.id, sent.user_message.id]  # newest first
    assert history[0].text == ANSWER and history[0].state == chat_pb2.MESSAGE_STATE_COMPLETE


async def test_the_second_message_carries_the_history_and_an_untitled_conversation_gets_a_title(
    chat: Start, ollama: FakeProvider
) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create()
    assert conversation.title == ""
    await alice.send(conversation.id, "What is the capital of France, in one word?")
    got = await alice.stub.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=conversation.id), metadata=alice.md
    )
    assert got.conversation.title == "What is the capital of France, in one word?"
    await alice.send(conversation.id, "and of Spain?")
    body = ollama.chats[-1].body
    assert body is not None
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == ANSWER
    titled = await alice.create(title="Mine")
    await alice.send(titled.id, "something else entirely")
    again = await alice.stub.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=titled.id), metadata=alice.md
    )
    assert again.conversation.title == "Mine"


async def test_history_is_trimmed_to_the_context_newest_first(chat: Start, ollama: FakeProvider) -> None:
    (alice,) = await chat(1, chat_context_chars=300)
    conversation = await alice.create()
    for i in range(6):
        await alice.send(conversation.id, f"message number {i} " + "x" * 40)
    body = ollama.chats[-1].body
    assert body is not None
    sent = body["messages"]
    assert sum(len(m["content"]) for m in sent) <= 300
    assert sent[-1]["content"].startswith("message number 5") and len(sent) < 11


async def test_a_retry_with_the_same_request_id_returns_the_same_messages_and_one_generation(
    chat: Start, ollama: FakeProvider
) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create()
    first = await alice.send(conversation.id, "once", client_request_id="req-1")
    again = await alice.send(conversation.id, "once", client_request_id="req-1")
    assert again.user_message.id == first.user_message.id and again.reply.id == first.reply.id
    assert again.reply.text == ANSWER and len(ollama.chats) == 1
    # Concurrent retries (a client that timed out and resent) still make one message and one generation.
    ollama.script.delay = 0.02
    racing = await asyncio.gather(*(alice.send(conversation.id, "twice", client_request_id="req-2") for _ in range(4)))
    assert len({r.user_message.id for r in racing}) == 1 and len({r.reply.id for r in racing}) == 1
    assert all(r.reply.text == ANSWER for r in racing) and len(ollama.chats) == 2
    assert len(await alice.messages(conversation.id)) == 4


async def test_a_caller_that_goes_away_does_not_stop_the_answer(chat: Start, ollama: FakeProvider) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create()
    ollama.script.delay = 0.03
    call = alice.send_call(conversation.id, "long answer please")
    seen = []
    async for response in call:
        seen.append(response)
        if len(seen) == 3:
            break
    call.cancel()
    reply_id = seen[1].delta.message_id
    await eventually(lambda: ollama.completed == 1, 10)

    async def finished() -> chat_pb2.Message:
        while True:
            history = await alice.messages(conversation.id)
            found = [m for m in history if m.id == reply_id]
            if found and found[0].state != chat_pb2.MESSAGE_STATE_STREAMING:
                return found[0]
            await asyncio.sleep(0.02)

    reply = await asyncio.wait_for(finished(), 10)
    assert reply.text == ANSWER and reply.state == chat_pb2.MESSAGE_STATE_COMPLETE
    assert ollama.disconnects == 0


async def test_cancel_keeps_the_partial_answer_and_the_router_counts_what_was_produced(
    chat: Start, ollama: FakeProvider
) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create()
    ollama.script.delay = 0.2
    call = alice.send_call(conversation.id, "a slow one")
    responses = []
    async for response in call:
        responses.append(response)
        if len(responses) == 3:  # the user message and two deltas
            break
    reply_id = responses[1].delta.message_id
    cancelled = await alice.stub.CancelGeneration(
        chat_pb2.CancelGenerationRequest(conversation_id=conversation.id, message_id=reply_id), metadata=alice.md
    )
    message = cancelled.message
    assert message.state == chat_pb2.MESSAGE_STATE_CANCELLED
    assert message.finish_reason == chat_pb2.FINISH_REASON_CANCELLED
    assert ANSWER.startswith(message.text) and len(message.text) >= len(WORDS[0] + WORDS[1])
    # The stream that was still open ends with the cancelled reply.
    rest = [r async for r in call]
    assert rest[-1].assistant_message.state == chat_pb2.MESSAGE_STATE_CANCELLED
    assert rest[-1].assistant_message.text == message.text
    await eventually(lambda: ollama.disconnects == 1, 5)
    # Cancelling again (or a finished reply) answers the reply as it is.
    again = await alice.stub.CancelGeneration(
        chat_pb2.CancelGenerationRequest(conversation_id=conversation.id, message_id=reply_id), metadata=alice.md
    )
    assert again.message.state == chat_pb2.MESSAGE_STATE_CANCELLED
    # The AI router recorded the cancelled generation's tokens for alice.
    usage_stub = ai_pb2_grpc.AIRouterServiceStub(alice.user.channel)

    async def recorded() -> ai_pb2.GetUsageResponse:
        while True:
            usage = await usage_stub.GetUsage(ai_pb2.GetUsageRequest(), metadata=alice.md)
            if usage.total.completion_tokens:
                return usage
            await asyncio.sleep(0.05)

    usage = await asyncio.wait_for(recorded(), 5)
    assert usage.total.completion_tokens >= 2


async def test_a_failure_mid_stream_keeps_the_text_and_says_why(chat: Start, ollama: FakeProvider) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create()
    ollama.script.cut_after = 3
    sent = await alice.send(conversation.id, "this will break")
    reply = sent.reply
    assert reply.state == chat_pb2.MESSAGE_STATE_FAILED and reply.finish_reason == chat_pb2.FINISH_REASON_ERROR
    assert reply.text == "".join(WORDS[:3]) and reply.error
    stored = (await alice.messages(conversation.id))[0]
    assert stored.state == chat_pb2.MESSAGE_STATE_FAILED and stored.text == reply.text and stored.error == reply.error


async def test_an_unknown_model_is_refused_and_a_refusing_provider_fails_the_reply(
    chat: Start, ollama: FakeProvider
) -> None:
    (alice,) = await chat(1)
    unknown = await fails(alice.create(model="nowhere/nothing"))
    assert unknown.code == grpc.StatusCode.INVALID_ARGUMENT and unknown.violations() == {"model": "UNKNOWN_MODEL"}
    conversation = await alice.create()
    ollama.script.status, ollama.script.error = 500, "model crashed"
    sent = await alice.send(conversation.id, "hello?")
    assert sent.reply.state == chat_pb2.MESSAGE_STATE_FAILED and sent.reply.text == ""
    assert sent.reply.error and sent.reply.finish_reason == chat_pb2.FINISH_REASON_ERROR


async def test_builtin_echo_answers_with_the_message(chat: Start) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create(model="builtin/echo")
    sent = await alice.send(conversation.id, "one two three")
    assert (
        sent.reply.text.split() == ["one", "two", "three"] and "".join(d.text for d in sent.deltas) == sent.reply.text
    )


async def test_messages_page_backwards_from_the_newest(chat: Start) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create(model="builtin/echo")
    for i in range(3):
        await alice.send(conversation.id, f"m{i}")
    first = await alice.stub.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=conversation.id, page_size=4), metadata=alice.md
    )
    second = await alice.stub.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=conversation.id, page_size=4, page_token=first.next_page_token),
        metadata=alice.md,
    )
    texts = [m.text for m in first.messages] + [m.text for m in second.messages]
    assert texts == ["m2", "m2", "m1", "m1", "m0", "m0"] and second.next_page_token == ""
    forged = await fails(
        alice.stub.ListMessages(
            chat_pb2.ListMessagesRequest(conversation_id=conversation.id, page_token="bm90IGEgdG9rZW4"),
            metadata=alice.md,
        )
    )
    assert forged.code == grpc.StatusCode.INVALID_ARGUMENT
    from pynode.core.paging import encode_token

    for position in ({"t": "not a time", "i": "x"}, {"t": "2026-01-01T00:00:00", "i": conversation.id}, {"t": 5}):
        bad = await fails(
            alice.stub.ListMessages(
                chat_pb2.ListMessagesRequest(conversation_id=conversation.id, page_token=encode_token(position)),
                metadata=alice.md,
            )
        )
        assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.violations() == {"page_token": "BAD_PAGE_TOKEN"}


async def test_bad_messages_are_refused_with_field_violations(chat: Start) -> None:
    (alice,) = await chat(1, chat_messages_per_minute=3)
    conversation = await alice.create(model="builtin/echo")
    blank = await fails(alice.send(conversation.id, "   "))
    assert blank.code == grpc.StatusCode.INVALID_ARGUMENT and "text" in blank.violations()
    huge = await fails(alice.send(conversation.id, "x" * 40_000))
    assert huge.code == grpc.StatusCode.INVALID_ARGUMENT and "text" in huge.violations()
    for _ in range(3):
        await alice.send(conversation.id, "ok")
    limited = await fails(alice.send(conversation.id, "one too many"))
    assert limited.code == grpc.StatusCode.RESOURCE_EXHAUSTED and limited.reason == "RATE_LIMITED"
