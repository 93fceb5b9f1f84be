"""Tool calling through the router: both wire formats, history with results, refusals, cache, usage, cancel."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
from devpynode.ai.v1 import ai_pb2

from tests.ai.conftest import AIClient, Answer, routing_file
from tests.ai.fakes import FakeProvider
from tests.client import eventually, rich_error

# A schema with keys a lossy client would drop (minimum, additionalProperties, nested items) and an integer.
WEATHER = ai_pb2.Tool(
    name="get_weather",
    description="The weather in a city",
    parameters_json='{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer",'
    '"minimum":1,"maximum":7}},"required":["city"],"additionalProperties":false}',
)
TIME = ai_pb2.Tool(
    name="get_time",
    parameters_json='{"type":"object","properties":{"zones":{"type":"array","items":{"type":"string"}}}}',
)
CALLS = [
    {"id": "call_a1", "name": "get_weather", "arguments": '{"city": "Paris", "days": 3}'},
    {"id": "call_b2", "name": "get_time", "arguments": '{"zones": ["Europe/Paris", "UTC"]}'},
]


def _request(model: str, text: str = "weather and time?", **fields: Any) -> ai_pb2.GenerateRequest:
    options = fields.pop("options", ai_pb2.GenerateOptions(no_cache=True))
    return ai_pb2.GenerateRequest(
        model=model,
        messages=fields.pop("messages", [ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content=text)]),
        options=options,
        tools=fields.pop("tools", [WEATHER, TIME]),
        **fields,
    )


async def _ask(client: AIClient, request: ai_pb2.GenerateRequest) -> Answer:
    pieces = [p async for p in client.stub.Generate(request, metadata=client.user.md(), timeout=30)]
    return Answer("".join(p.text for p in pieces), pieces)


def _calls(answer: Answer) -> list[dict[str, str]]:
    """The calls as a client assembles them from the deltas (id and name first, then argument fragments)."""
    calls: dict[int, dict[str, str]] = {}
    for piece in answer.pieces:
        for delta in piece.tool_calls:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            if delta.id:
                assert not call["id"], "a call's id comes once, on its first piece"
                call["id"] = delta.id
            call["name"] = call["name"] or delta.name
            call["arguments"] += delta.arguments_json
    return [calls[i] for i in sorted(calls)]


def _schema(tool: ai_pb2.Tool) -> Any:
    return json.loads(tool.parameters_json)


async def test_openai_tools_go_out_whole_and_streamed_fragments_come_back_as_calls(
    ai: Any, openai: FakeProvider
) -> None:
    client: AIClient = await ai()
    openai.script.tokens = []
    openai.script.tool_calls = CALLS
    openai.script.fragment = 3  # arguments split across many chunks
    choice = ai_pb2.ToolChoice(mode=ai_pb2.TOOL_CHOICE_MODE_NAMED, name="get_weather")
    answer = await _ask(client, _request("openai/gpt-test", tool_choice=choice))
    assert _calls(answer) == CALLS
    assert answer.last.finish_reason == ai_pb2.FINISH_REASON_TOOL_CALLS
    assert answer.last.usage.prompt_tokens == 11
    body = openai.chats[-1].body
    assert body is not None
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "The weather in a city", "parameters": _schema(WEATHER)},
        },
        {"type": "function", "function": {"name": "get_time", "parameters": _schema(TIME)}},
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    for mode, wire in ((ai_pb2.TOOL_CHOICE_MODE_REQUIRED, "required"), (ai_pb2.TOOL_CHOICE_MODE_NONE, "none")):
        await _ask(client, _request("openai/gpt-test", tool_choice=ai_pb2.ToolChoice(mode=mode)))
        assert openai.chats[-1].body is not None and openai.chats[-1].body["tool_choice"] == wire
    await _ask(client, _request("openai/gpt-test"))
    assert "tool_choice" not in (openai.chats[-1].body or {})  # auto: the server's default


async def test_ollama_tools_go_out_exactly_and_whole_calls_come_back_with_ids(ai: Any, ollama: FakeProvider) -> None:
    client: AIClient = await ai()
    ollama.script.tokens = ["Checking."]
    ollama.script.tool_calls = CALLS
    answer = await _ask(client, _request("ollama/llama3.2:latest"))
    assert answer.text == "Checking."
    calls = _calls(answer)
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        (c["name"], json.loads(c["arguments"])) for c in CALLS
    ]
    assert all(c["id"].startswith("call_") for c in calls) and calls[0]["id"] != calls[1]["id"]
    assert answer.last.finish_reason == ai_pb2.FINISH_REASON_TOOL_CALLS
    body = ollama.chats[-1].body
    assert body is not None and body["tools"][0]["function"]["parameters"] == _schema(WEATHER)  # nothing dropped
    named = ai_pb2.ToolChoice(mode=ai_pb2.TOOL_CHOICE_MODE_NAMED, name="get_time")
    await _ask(client, _request("ollama/llama3.2:latest", tool_choice=named))
    assert [t["function"]["name"] for t in (ollama.chats[-1].body or {})["tools"]] == ["get_time"]
    await _ask(client, _request("ollama/llama3.2:latest", tool_choice=ai_pb2.ToolChoice(mode=2)))
    assert "tools" not in (ollama.chats[-1].body or {})


def _history() -> list[ai_pb2.ChatMessage]:
    return [
        ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content="weather and time?"),
        ai_pb2.ChatMessage(
            role=ai_pb2.MESSAGE_ROLE_ASSISTANT,
            tool_calls=[ai_pb2.ToolCall(id=c["id"], name=c["name"], arguments_json=c["arguments"]) for c in CALLS],
        ),
        ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_TOOL, tool_call_id="call_b2", content='{"time": "12:00"}'),
        ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_TOOL, tool_call_id="call_a1", content='{"sky": "clear"}'),
    ]


async def test_tool_results_continue_the_conversation_in_both_wire_formats(
    ai: Any, openai: FakeProvider, ollama: FakeProvider
) -> None:
    client: AIClient = await ai()
    answer = await _ask(client, _request("openai/gpt-test", messages=_history()))
    assert answer.text == "Hello from the fake model." and answer.last.finish_reason == ai_pb2.FINISH_REASON_STOP
    sent = (openai.chats[-1].body or {})["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in CALLS
        ],
    }
    assert sent[2] == {"role": "tool", "tool_call_id": "call_b2", "content": '{"time": "12:00"}'}
    await _ask(client, _request("ollama/llama3.2:latest", messages=_history()))
    sent = (ollama.chats[-1].body or {})["messages"]
    assert sent[1]["tool_calls"][0] == {"function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}}
    assert sent[2] == {"role": "tool", "content": '{"time": "12:00"}', "tool_name": "get_time"}
    assert sent[3]["tool_name"] == "get_weather"


def _routing(tmp_path: Path, openai: FakeProvider) -> str:
    return routing_file(
        tmp_path,
        f"""
        providers:
          plain: {{type: openai, url: "{openai.url}", models: [gpt-test], capabilities: {{}}}}
        aliases:
          smart: {{deployments: [{{model: plain/gpt-test}}], fallbacks: [openai/gpt-test]}}
        """,
    )


async def test_models_that_cannot_call_tools_refuse_them_with_a_field_violation(
    ai: Any, openai: FakeProvider, tmp_path: Path
) -> None:
    client: AIClient = await ai(ai_config=_routing(tmp_path, openai))
    listed = (await client.stub.ListModels(ai_pb2.ListModelsRequest(), metadata=client.user.md())).models
    by_id = {m.id: list(m.capabilities) for m in listed}
    assert by_id["plain/gpt-test"] == []
    assert (
        ai_pb2.MODEL_CAPABILITY_TOOLS in by_id["openai/gpt-test"]
        and ai_pb2.MODEL_CAPABILITY_TOOLS in by_id["builtin/echo"]
    )
    chats = len(openai.chats)
    try:
        await _ask(client, _request("plain/gpt-test"))
        raise AssertionError("tools were accepted by a model without them")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = rich_error(error)
        assert details.reason == "TOOLS_NOT_SUPPORTED" and details.violations() == {"tools": "TOOLS_NOT_SUPPORTED"}
        assert "plain/gpt-test cannot call tools" in details.message
    assert len(openai.chats) == chats  # refused before any provider call
    answer = await _ask(client, _request("smart"))  # an alias goes on to a deployment that can
    assert answer.last.model == "openai/gpt-test"


async def test_bad_tool_definitions_and_history_are_invalid_arguments(ai: Any) -> None:
    client: AIClient = await ai()
    bad = [
        ai_pb2.Tool(name="has space"),
        ai_pb2.Tool(name="schema", parameters_json="[1, 2]"),
        ai_pb2.Tool(name="schema", parameters_json="{"),
        ai_pb2.Tool(name="deep", parameters_json="[" * 30_000 + "]" * 30_000),  # deeper than Python's parser goes
    ]
    choice = ai_pb2.ToolChoice(mode=ai_pb2.TOOL_CHOICE_MODE_NAMED, name="missing")
    history = [
        ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content="x", tool_calls=[ai_pb2.ToolCall(id="c", name="n")]),
        ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_TOOL, content="no call id"),
        ai_pb2.ChatMessage(
            role=ai_pb2.MESSAGE_ROLE_ASSISTANT, tool_calls=[ai_pb2.ToolCall(id="c", name="n", arguments_json="nope")]
        ),
    ]
    try:
        await _ask(client, _request("builtin/echo", tools=bad, tool_choice=choice, messages=history))
        raise AssertionError("accepted")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        violations = rich_error(error).violations()
    assert set(violations) == {
        "tools[0].name",
        "tools[1].parameters_json",
        "tools[2].name",
        "tools[2].parameters_json",
        "tools[3].parameters_json",
        "tool_choice.name",
        "messages[0].tool_calls",
        "messages[1].tool_call_id",
        "messages[2].tool_calls[0].arguments_json",
    }
    required = ai_pb2.ToolChoice(mode=ai_pb2.TOOL_CHOICE_MODE_REQUIRED)
    try:
        await _ask(client, _request("builtin/echo", tools=[], tool_choice=required))
        raise AssertionError("accepted")
    except grpc.aio.AioRpcError as error:
        assert rich_error(error).violations() == {"tool_choice": "INVALID"}


async def test_the_echo_model_calls_a_forced_tool_then_echoes_its_result(ai: Any) -> None:
    client: AIClient = await ai()
    choice = ai_pb2.ToolChoice(mode=ai_pb2.TOOL_CHOICE_MODE_REQUIRED)
    answer = await _ask(client, _request("builtin/echo", "Paris please", tool_choice=choice))
    calls = _calls(answer)
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [("get_weather", {"text": "Paris please"})]
    assert answer.last.finish_reason == ai_pb2.FINISH_REASON_TOOL_CALLS and answer.text == ""
    assert answer.last.usage.completion_tokens == 3
    again = await _ask(client, _request("builtin/echo", "Paris please", tool_choice=choice))
    assert _calls(again) == calls  # deterministic
    auto = await _ask(client, _request("builtin/echo", "Paris please"))
    assert auto.text == "Paris please" and not _calls(auto)
    history = [
        ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content="Paris please"),
        ai_pb2.ChatMessage(
            role=ai_pb2.MESSAGE_ROLE_ASSISTANT,
            tool_calls=[ai_pb2.ToolCall(id=calls[0]["id"], name="get_weather", arguments_json=calls[0]["arguments"])],
        ),
        ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_TOOL, tool_call_id=calls[0]["id"], content="sunny, 21 C"),
    ]
    result = await _ask(client, _request("builtin/echo", messages=history, tool_choice=choice))
    assert result.text == "sunny, 21 C" and result.last.finish_reason == ai_pb2.FINISH_REASON_STOP


async def test_tool_calls_are_cached_like_text_and_counted(ai: Any, openai: FakeProvider) -> None:
    client: AIClient = await ai()
    openai.script.tokens = []
    openai.script.tool_calls = CALLS
    deterministic = ai_pb2.GenerateOptions(temperature=0)
    first = await _ask(client, _request("openai/gpt-test", options=deterministic))
    chats = len(openai.chats)
    second = await _ask(client, _request("openai/gpt-test", options=deterministic))
    assert len(openai.chats) == chats and second.last.cached and not first.last.cached
    assert _calls(second) == _calls(first) == CALLS
    assert second.last.finish_reason == ai_pb2.FINISH_REASON_TOOL_CALLS
    other = await _ask(client, _request("openai/gpt-test", options=deterministic, tools=[WEATHER]))
    assert not other.last.cached  # other tools, another answer
    await client.parts.service.drain()
    usage = await client.stub.GetUsage(ai_pb2.GetUsageRequest(), metadata=client.user.md())
    row = next(m for m in usage.models if m.model == "openai/gpt-test")
    assert row.requests == 3 and row.cached_requests == 1 and row.usage.prompt_tokens == 33


async def test_a_cancelled_tool_call_stream_closes_upstream_and_is_counted(ai: Any, openai: FakeProvider) -> None:
    client: AIClient = await ai()
    openai.script.tokens = ["Let", " me", " check"]
    openai.script.delay = 5.0
    openai.script.tool_calls = CALLS
    call = client.stub.Generate(_request("openai/gpt-test"), metadata=client.user.md(), timeout=30)
    first = await call.read()
    assert first.text == "Let"
    call.cancel()
    await eventually(lambda: openai.disconnects == 1)
    await client.parts.service.drain()
    await asyncio.sleep(0)
    usage = await client.stub.GetUsage(ai_pb2.GetUsageRequest(), metadata=client.user.md())
    row = next(m for m in usage.models if m.model == "openai/gpt-test")
    assert row.unfinished_requests == 1 and row.usage.completion_tokens == 1


def test_openai_tool_call_fragments_split_anywhere_across_reads_assemble_whole() -> None:
    from pynode.ai.providers.openai import _Events
    from pynode.ai.tools import assemble

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"

    stream = b"".join(
        [
            event({"tool_calls": [{"index": 0, "id": "c0", "type": "function", "function": {"name": "f"}}]}),
            # Two calls in one chunk, as some servers send them.
            event(
                {
                    "tool_calls": [
                        {"index": 0, "function": {"arguments": '{"a": '}},
                        {"index": 1, "id": "c1", "function": {"name": "g", "arguments": "{}"}},
                    ]
                }
            ),
            # llama.cpp repeats the id and name on every piece: handed over once all the same.
            event({"tool_calls": [{"index": 0, "id": "c0", "function": {"name": "f", "arguments": "1}"}}]}),
            event({}, "stop"),  # OpenAI says stop for a forced call: calls were made all the same
            b"data: [DONE]\n\n",
        ]
    )
    for cut in range(1, len(stream), 7):
        events = _Events("p")
        pieces = []
        for part in (stream[:cut], stream[cut:]):
            events.feed(part)
            pieces += events.calls
            events.calls = []
        assert [(c.id, c.name, c.arguments) for c in assemble(pieces)] == [("c0", "f", '{"a": 1}'), ("c1", "g", "{}")]
        assert events.called and events.done
        assert [p.index for p in pieces if p.id] == [0, 1] and [p.index for p in pieces if p.name] == [0, 1]
