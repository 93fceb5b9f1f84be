"""Chat answered by the real local model (SmolLM2 on llama.cpp): the stream's shape, and an answer that survives
its caller going away. On the words only their presence is asserted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from devpynode.chat.v1 import chat_pb2

from tests.chat.conftest import Start
from tests.conftest import LocalModelServer

MODEL = "local/smollm2"
MAX_TOKENS = 24  # every answer is cut here or stops before: cheap, and LENGTH is likely

pytestmark = pytest.mark.parametrize("backend", ["real"], indirect=True)


def _settings(local_model: LocalModelServer) -> dict[str, Any]:
    return {"ai_local_url": local_model.url, "ai_local_model": "smollm2", "ai_default_max_tokens": MAX_TOKENS}


async def test_a_message_is_answered_by_the_real_model_as_a_stream(chat: Start, local_model: LocalModelServer) -> None:
    (alice,) = await chat(1, **_settings(local_model))
    conversation = await alice.create(model=MODEL)
    sent = await alice.send(conversation.id, "Tell me about the sea.")
    kinds = [r.WhichOneof("event") for r in sent.responses]
    assert kinds[0] == "user_message" and kinds[-1] == "assistant_message" and set(kinds[1:-1]) == {"delta"}
    assert len(sent.deltas) >= 2 and [d.seq for d in sent.deltas] == list(range(len(sent.deltas)))
    reply = sent.reply
    assert reply.state == chat_pb2.MESSAGE_STATE_COMPLETE and reply.model == MODEL and reply.text.strip()
    assert reply.text == "".join(d.text for d in sent.deltas)
    assert reply.finish_reason in (chat_pb2.FINISH_REASON_STOP, chat_pb2.FINISH_REASON_LENGTH)
    assert 1 <= reply.usage.completion_tokens <= MAX_TOKENS and reply.usage.prompt_tokens > 0
    # The second message carries the history: the model answers again (the prompt is longer).
    second = await alice.send(conversation.id, "And about the mountains?")
    assert second.reply.state == chat_pb2.MESSAGE_STATE_COMPLETE and second.reply.text.strip()
    assert second.reply.usage.prompt_tokens > reply.usage.prompt_tokens


async def test_an_answer_of_the_real_model_survives_its_caller_going_away(
    chat: Start, local_model: LocalModelServer
) -> None:
    (alice,) = await chat(1, **_settings(local_model))
    conversation = await alice.create(model=MODEL)
    before = local_model.log_text().count("Disconnected from client")
    call = alice.send_call(conversation.id, "Write a long story about a lighthouse keeper.")
    seen = []
    async for response in call:
        seen.append(response)
        if len(seen) == 3:  # the user message and two deltas
            break
    call.cancel()
    reply_id = seen[1].delta.message_id

    async def finished() -> chat_pb2.Message:
        while True:
            found = [m for m in await alice.messages(conversation.id) if m.id == reply_id]
            if found and found[0].state != chat_pb2.MESSAGE_STATE_STREAMING:
                return found[0]
            await asyncio.sleep(0.05)

    reply = await asyncio.wait_for(finished(), 30)
    assert reply.state == chat_pb2.MESSAGE_STATE_COMPLETE and reply.text.startswith(seen[1].delta.text)
    assert reply.finish_reason in (chat_pb2.FINISH_REASON_STOP, chat_pb2.FINISH_REASON_LENGTH)
    assert reply.usage.completion_tokens >= 3
    # The model server read the whole answer out: no connection of this one was closed early.
    assert local_model.log_text().count("Disconnected from client") == before
