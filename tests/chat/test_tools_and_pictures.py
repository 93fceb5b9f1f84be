"""Tool calls and pictures in conversations: calls kept in history, results posted by call id, pictures of the
newest message given to vision models."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
from devpynode.chat.v1 import chat_pb2
from devpynode.files.v1 import files_pb2, files_pb2_grpc

from tests.ai.conftest import routing_file
from tests.ai.fakes import FakeProvider
from tests.ai.pictures import png
from tests.chat.conftest import Member, Start
from tests.client import fails

WEATHER = chat_pb2.Tool(
    name="get_weather",
    description="The weather in a city",
    parameters_json='{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}',
)
CALLS = [
    {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
    {"id": "call_2", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
]


def _config(tmp_path: Path, ollama: FakeProvider, capabilities: str) -> str:
    return routing_file(
        tmp_path,
        f"""
        providers:
          ollama: {{type: ollama, url: "{ollama.url}", capabilities: {capabilities}}}
        """,
    )


async def test_a_conversation_goes_on_after_the_members_tool_results(chat: Start, ollama: FakeProvider) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create()
    ollama.script.tool_calls = CALLS
    ollama.script.tokens = []
    asked = await alice.send(conversation.id, "weather in Paris and Oslo?", tools=[WEATHER])
    reply = asked.reply
    assert reply.state == chat_pb2.MESSAGE_STATE_COMPLETE
    assert reply.finish_reason == chat_pb2.FINISH_REASON_TOOL_CALLS
    calls = [(c.name, json.loads(c.arguments_json)) for c in reply.tool_calls]
    assert calls == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})]
    sent = ollama.chats[-1].body or {}
    assert sent["tools"][0]["function"]["name"] == "get_weather"

    ollama.script.tool_calls = []
    ollama.script.tokens = ["Sunny", " in Paris, snow in Oslo."]
    results = [
        chat_pb2.ToolResult(tool_call_id=reply.tool_calls[0].id, content='{"sky": "sunny"}'),
        chat_pb2.ToolResult(tool_call_id=reply.tool_calls[1].id, content='{"sky": "snow"}'),
    ]
    answered = await alice.send(conversation.id, "", tool_results=results, tools=[WEATHER])
    assert answered.user_message.role == chat_pb2.MESSAGE_ROLE_TOOL
    assert answered.user_message.tool_call_id == reply.tool_calls[1].id
    assert answered.reply.text == "Sunny in Paris, snow in Oslo."
    assert answered.reply.finish_reason == chat_pb2.FINISH_REASON_STOP
    prompt = (ollama.chats[-1].body or {})["messages"]
    assert [m["role"] for m in prompt] == ["user", "assistant", "tool", "tool"]
    assert [c["function"]["arguments"] for c in prompt[1]["tool_calls"]] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert [(m["tool_name"], m["content"]) for m in prompt[2:]] == [
        ("get_weather", '{"sky": "sunny"}'),
        ("get_weather", '{"sky": "snow"}'),
    ]
    history = list(reversed(await alice.messages(conversation.id)))
    assert [m.role for m in history] == [
        chat_pb2.MESSAGE_ROLE_USER,
        chat_pb2.MESSAGE_ROLE_ASSISTANT,
        chat_pb2.MESSAGE_ROLE_TOOL,
        chat_pb2.MESSAGE_ROLE_TOOL,
        chat_pb2.MESSAGE_ROLE_ASSISTANT,
    ]
    assert [c.id for c in history[1].tool_calls] == [c.id for c in reply.tool_calls]
    assert [m.tool_call_id for m in history[2:4]] == [c.id for c in reply.tool_calls]


async def test_tool_results_must_answer_the_last_replys_calls(chat: Start, ollama: FakeProvider) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create()
    await alice.send(conversation.id, "plain question")
    stray = [chat_pb2.ToolResult(tool_call_id="call_nope", content="x")]
    refused = await fails(alice.send(conversation.id, "", tool_results=stray))
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.violations() == {"tool_results[0].tool_call_id": "INVALID"}
    ollama.script.tool_calls = CALLS[:1]
    reply = (await alice.send(conversation.id, "weather?", tools=[WEATHER])).reply
    twice = [chat_pb2.ToolResult(tool_call_id=reply.tool_calls[0].id, content="x")] * 2
    assert (
        "tool_results[1].tool_call_id"
        in (await fails(alice.send(conversation.id, "", tool_results=twice))).violations()
    )
    both = [chat_pb2.ToolResult(tool_call_id=reply.tool_calls[0].id, content="x")]
    assert (
        await fails(alice.send(conversation.id, "and text", tool_results=both))
    ).code == grpc.StatusCode.INVALID_ARGUMENT
    assert set((await fails(alice.send(conversation.id, ""))).violations()) == {"text"}
    bad = [chat_pb2.Tool(name="bad name", parameters_json="[]")]
    assert set((await fails(alice.send(conversation.id, "x", tools=bad))).violations()) == {
        "tools[0].name",
        "tools[0].parameters_json",
    }


async def test_a_model_that_cannot_call_tools_fails_the_reply_saying_so(
    chat: Start, ollama: FakeProvider, tmp_path: Path
) -> None:
    (alice,) = await chat(1, ai_config=_config(tmp_path, ollama, "{}"))
    conversation = await alice.create()
    reply = (await alice.send(conversation.id, "weather?", tools=[WEATHER])).reply
    assert reply.state == chat_pb2.MESSAGE_STATE_FAILED and "cannot call tools" in reply.error
    assert not ollama.chats


def _upload(data: bytes) -> Iterator[files_pb2.UploadFileRequest]:
    yield files_pb2.UploadFileRequest(metadata=files_pb2.FileMetadata(filename="red.png", content_type="image/png"))
    yield files_pb2.UploadFileRequest(chunk=data)


async def _picture(member: Member) -> files_pb2.File:
    stub = files_pb2_grpc.FileServiceStub(member.user.channel)
    return (await stub.UploadFile(_upload(png()), metadata=member.md)).file


async def test_a_picture_attached_reaches_a_vision_model_once(
    chat: Start, ollama: FakeProvider, tmp_path: Path
) -> None:
    alice, bob = await chat(2, ai_config=_config(tmp_path, ollama, '{"*": [vision]}'))
    conversation = await alice.create()
    await alice.invite(conversation.id, bob)
    picture = await _picture(alice)
    assert picture.content_type == "image/png"
    sent = await alice.send(conversation.id, "what is in it?", attachment_file_ids=[picture.id])
    assert sent.reply.state == chat_pb2.MESSAGE_STATE_COMPLETE
    prompt = (ollama.chats[-1].body or {})["messages"]
    assert prompt == [{"role": "user", "content": "what is in it?", "images": [base64.b64encode(png()).decode()]}]
    await bob.send(conversation.id, "and now?")  # bob's turn: alice's picture is not sent again
    assert all("images" not in m for m in (ollama.chats[-1].body or {})["messages"])


async def test_a_picture_for_a_text_model_fails_the_reply_and_not_the_next(chat: Start, ollama: FakeProvider) -> None:
    (alice,) = await chat(1)
    conversation = await alice.create()
    picture = await _picture(alice)
    failed = (await alice.send(conversation.id, "what is in it?", attachment_file_ids=[picture.id])).reply
    assert failed.state == chat_pb2.MESSAGE_STATE_FAILED and "cannot see images" in failed.error
    after = (await alice.send(conversation.id, "never mind")).reply
    assert after.state == chat_pb2.MESSAGE_STATE_COMPLETE
