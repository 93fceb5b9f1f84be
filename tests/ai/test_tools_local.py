"""Tools, embeddings and the picture refusal against the real local model (llama.cpp serving SmolLM2).

Assertions are on shape and behaviour, never on the model's words: a forced tool choice makes a real call
whose arguments are a JSON object, embeddings have the model's 576 dimensions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
from devpynode.ai.v1 import ai_pb2

from tests.ai.conftest import AIClient, LlamaServer, routing_file
from tests.ai.pictures import png
from tests.client import fails

MODEL = "llama/smollm2"
WEATHER = ai_pb2.Tool(
    name="get_weather",
    description="Get the current weather in a city",
    parameters_json='{"type":"object","properties":{"city":{"type":"string","description":"City name"}},'
    '"required":["city"]}',
)


async def _client(ai: Any, llama: LlamaServer, tmp_path: Path) -> AIClient:
    config = routing_file(
        tmp_path,
        f"""
        providers:
          llama: {{type: openai, url: "{llama.url}", models: [smollm2]}}
        """,
    )
    client: AIClient = await ai(ai_config=config)
    return client


async def test_a_forced_tool_choice_makes_the_real_model_call_the_tool(
    ai: Any, llama_server: LlamaServer, tmp_path: Path
) -> None:
    client = await _client(ai, llama_server, tmp_path)
    request = ai_pb2.GenerateRequest(
        model=MODEL,
        messages=[ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content="What is the weather in Paris?")],
        options=ai_pb2.GenerateOptions(temperature=0, max_tokens=64, no_cache=True),
        tools=[WEATHER],
        tool_choice=ai_pb2.ToolChoice(mode=ai_pb2.TOOL_CHOICE_MODE_NAMED, name="get_weather"),
    )
    pieces = [p async for p in client.stub.Generate(request, metadata=client.user.md(), timeout=120)]
    deltas = [d for p in pieces for d in p.tool_calls]
    assert deltas and deltas[0].name == "get_weather" and deltas[0].id
    arguments = "".join(d.arguments_json for d in deltas if d.index == 0)
    assert isinstance(json.loads(arguments), dict)
    last = pieces[-1]
    assert last.finish_reason == ai_pb2.FINISH_REASON_TOOL_CALLS and last.usage.prompt_tokens > 0
    # The call goes back with a result and the model answers in text.
    follow = ai_pb2.GenerateRequest(
        model=MODEL,
        messages=[
            request.messages[0],
            ai_pb2.ChatMessage(
                role=ai_pb2.MESSAGE_ROLE_ASSISTANT,
                tool_calls=[ai_pb2.ToolCall(id=deltas[0].id, name="get_weather", arguments_json=arguments)],
            ),
            ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_TOOL, tool_call_id=deltas[0].id, content='{"sky": "sunny"}'),
        ],
        options=ai_pb2.GenerateOptions(temperature=0, max_tokens=24, no_cache=True),
    )
    answer = [p async for p in client.stub.Generate(follow, metadata=client.user.md(), timeout=120)]
    assert answer[-1].finish_reason in (ai_pb2.FINISH_REASON_STOP, ai_pb2.FINISH_REASON_LENGTH)
    assert "".join(p.text for p in answer).strip()


async def test_the_real_model_embeds_a_batch(ai: Any, llama_server: LlamaServer, tmp_path: Path) -> None:
    client = await _client(ai, llama_server, tmp_path)
    texts = ["the cat sat on the mat", "a kitten rested on the rug", "quarterly tax filing deadline"]
    response = await client.stub.Embed(ai_pb2.EmbedRequest(model=MODEL, inputs=texts), metadata=client.user.md())
    vectors = [list(e.values) for e in response.embeddings]
    assert len(vectors) == 3 and {len(v) for v in vectors} == {576}
    assert response.model == MODEL and response.usage.prompt_tokens > 0


async def test_a_picture_is_refused_for_the_text_only_local_model(
    ai: Any, llama_server: LlamaServer, tmp_path: Path
) -> None:
    client = await _client(ai, llama_server, tmp_path)
    request = ai_pb2.GenerateRequest(
        model=MODEL,
        messages=[
            ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content="what is it?", images=[ai_pb2.Image(data=png())])
        ],
    )
    refused = await fails(client.stub.Generate(request, metadata=client.user.md()).read())
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT and refused.reason == "VISION_NOT_SUPPORTED"
