"""Embed: batches over both wire formats, the built-in vectors, bounds, limits and the usage ledger."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import grpc
from devpynode.ai.v1 import ai_pb2
from google.rpc import error_details_pb2

from tests.ai.conftest import AIClient, routing_file
from tests.ai.fakes import FakeProvider
from tests.client import MeshClient, eventually, fails


async def _embed(client: AIClient, model: str, inputs: list[str], **fields: Any) -> ai_pb2.EmbedResponse:
    request = ai_pb2.EmbedRequest(model=model, inputs=inputs, **fields)
    response: ai_pb2.EmbedResponse = await client.stub.Embed(request, metadata=client.user.md(), timeout=30)
    return response


def _vectors(response: ai_pb2.EmbedResponse) -> list[list[float]]:
    return [list(e.values) for e in response.embeddings]


async def test_openai_compatible_embeddings_in_batches_in_input_order(ai: Any, openai: FakeProvider) -> None:
    client: AIClient = await ai(ai_embed_batch_size=2)
    texts = ["one", "two words", "three little words", "four", "five and more"]
    response = await _embed(client, "openai/gpt-test", texts, dimensions=3)
    # The fake answers each batch's rows in reverse order: `index` puts them back.
    assert _vectors(response) == [[float(len(t)), float(i % 2), 0.5] for i, t in enumerate(texts)]
    assert response.model == "openai/gpt-test" and response.usage.prompt_tokens == 10
    batches = [s.body for s in openai.seen if s.path == "/v1/embeddings"]
    assert [b["input"] for b in batches if b] == [texts[0:2], texts[2:4], texts[4:]]
    assert all(b and b["model"] == "gpt-test" and b["dimensions"] == 3 for b in batches)
    await client.parts.service.drain()
    usage = await client.stub.GetUsage(ai_pb2.GetUsageRequest(), metadata=client.user.md())
    row = next(m for m in usage.models if m.model == "openai/gpt-test")
    assert row.requests == 1 and row.usage.prompt_tokens == 10 and row.usage.completion_tokens == 0


async def test_ollama_embeddings_over_api_embed(ai: Any, ollama: FakeProvider) -> None:
    client: AIClient = await ai()
    response = await _embed(client, "ollama/llama3.2:latest", ["hello world", "bye"])
    assert _vectors(response) == [[11.0, 0.0, 0.5], [3.0, 1.0, 0.5]] and response.usage.prompt_tokens == 3
    seen = [s for s in ollama.seen if s.path == "/api/embed"][-1]
    assert seen.body == {"model": "llama3.2:latest", "input": ["hello world", "bye"]}


async def test_the_builtin_model_embeds_deterministically(ai: Any) -> None:
    client: AIClient = await ai()
    response = await _embed(client, "builtin/echo", ["red apple", "red apple", "blue sky"])
    first, same, other = _vectors(response)
    assert len(first) == 64 and first == same and first != other
    assert math.isclose(sum(v * v for v in first), 1.0, rel_tol=1e-5)


def _plain(tmp_path: Path, openai: FakeProvider) -> str:
    return routing_file(
        tmp_path,
        f"""
        providers:
          chatty: {{type: openai, url: "{openai.url}", models: [gpt-test], capabilities: {{"*": [tools]}}}}
        """,
    )


async def test_embed_bounds_capability_and_rate_limit(ai: Any, openai: FakeProvider, tmp_path: Path) -> None:
    client: AIClient = await ai(
        ai_config=_plain(tmp_path, openai), ai_embed_max_inputs=3, ai_embed_max_chars=1000, ai_requests_per_minute=4
    )
    too_many = await fails(_embed(client, "builtin/echo", ["a", "b", "c", "d"]))
    assert too_many.code == grpc.StatusCode.INVALID_ARGUMENT and too_many.violations() == {"inputs": "TOO_MANY"}
    long = await fails(_embed(client, "builtin/echo", ["x" * 600, "y" * 600]))
    assert long.violations() == {"inputs": "TOO_LONG"}
    empty = await fails(_embed(client, "builtin/echo", ["fine", ""]))
    assert empty.violations() == {"inputs[1]": "REQUIRED"}
    missing = await fails(client.stub.Embed(ai_pb2.EmbedRequest(model="builtin/echo"), metadata=client.user.md()))
    assert missing.violations() == {"inputs": "REQUIRED"}
    refused = await fails(_embed(client, "chatty/gpt-test", ["text"]))
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT and refused.reason == "EMBEDDINGS_NOT_SUPPORTED"
    assert refused.violations() == {"model": "EMBEDDINGS_NOT_SUPPORTED"}
    unknown = await fails(_embed(client, "nope", ["text"]))
    assert unknown.code == grpc.StatusCode.NOT_FOUND
    for _ in range(2):  # the refusal and the unknown model counted two of the four
        await _embed(client, "builtin/echo", ["ok"])
    limited = await fails(_embed(client, "builtin/echo", ["ok"]))
    assert limited.code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_an_answer_too_large_to_send_is_refused_before_any_work(ai: Any) -> None:
    # An attack asked for 256 x 65,536 numbers: the built-in model computed them on the event loop, then the answer
    # could not be sent (RESOURCE_EXHAUSTED, which OpenAI clients retry).
    client: AIClient = await ai()
    oversized = await fails(_embed(client, "builtin/echo", ["a b c"] * 8, dimensions=65536))
    assert oversized.code == grpc.StatusCode.INVALID_ARGUMENT and oversized.violations() == {"dimensions": "TOO_LARGE"}
    fits = await _embed(client, "builtin/echo", ["a b c"] * 4, dimensions=65536)
    assert len(_vectors(fits)) == 4


async def test_embed_counts_against_the_daily_token_budget(ai: Any) -> None:
    client: AIClient = await ai(ai_tokens_per_day=20)
    await _embed(client, "builtin/echo", ["one two three four five six seven eight nine ten"])
    await client.parts.service.drain()
    over = await fails(_embed(client, "builtin/echo", ["a b c d e f g h i j k l"]))
    assert over.code == grpc.StatusCode.RESOURCE_EXHAUSTED and over.reason == "TOKEN_BUDGET_EXHAUSTED"


async def test_provider_failures_on_embed_map_to_statuses(ai: Any, openai: FakeProvider) -> None:
    client: AIClient = await ai()
    openai.script.status = 503
    failed = await fails(_embed(client, "openai/gpt-test", ["text"]))
    assert failed.code == grpc.StatusCode.UNAVAILABLE and "sk-" not in failed.message
    openai.script.status = 404
    assert (await fails(_embed(client, "openai/gpt-test", ["text"]))).code == grpc.StatusCode.NOT_FOUND


def test_per_token_vectors_are_mean_pooled_to_unit_length() -> None:
    from pynode.ai.providers.openai import pooled

    assert pooled([0.5, 1.0]) == [0.5, 1.0]  # one vector per input: as given
    assert pooled([[3.0, 0.0], [3.0, 8.0]]) == [0.6, 0.8]  # llama.cpp without pooling: one per token


async def _same_address(client: AIClient) -> AIClient:
    """Another account, signed in from the client's address."""
    same = AIClient(MeshClient(client.user.channel, client.user.address), client.mesh)
    await same.user.register()
    return same


async def _held(openai: FakeProvider, client: AIClient, count: int) -> asyncio.Task[ai_pb2.EmbedResponse]:
    """An Embed call the fake provider holds until released; returns once the provider has it."""
    call = asyncio.create_task(_embed(client, "openai/gpt-test", ["held"]))
    await eventually(lambda: sum(s.path == "/v1/embeddings" for s in openai.seen) == count)
    return call


async def test_accounts_from_one_address_share_its_embed_cap(ai: Any, openai: FakeProvider) -> None:
    client: AIClient = await ai(ai_streams_per_address=1)
    openai.script.embed_holds = True
    held = await _held(openai, client, 1)
    refused = await fails(_embed(await _same_address(client), "builtin/echo", ["another account, the same address"]))
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED and refused.reason == "TOO_MANY_STREAMS"
    assert refused.detail(error_details_pb2.QuotaFailure).violations[0].subject == "ai:streams_per_address"
    elsewhere = AIClient(client.user.as_other_address(), client.mesh)
    await elsewhere.user.register()
    assert len(_vectors(await _embed(elsewhere, "builtin/echo", ["another address"]))) == 1
    openai.release()
    assert len(_vectors(await held)) == 1


async def test_embed_calls_queue_in_their_addresss_lane(ai: Any, openai: FakeProvider) -> None:
    # One at a time, four waiting, a quarter of them (one) per lane: accounts from one address share one lane.
    client: AIClient = await ai(ai_max_concurrency=1, ai_max_queue=4, ai_streams_per_address=0)
    openai.script.embed_holds = True
    running = await _held(openai, client, 1)
    first, second = await _same_address(client), await _same_address(client)
    queued = asyncio.create_task(_embed(first, "openai/gpt-test", ["waits its turn"]))
    await eventually(lambda: client.parts.router.gate("openai/gpt-test").waiting == 1)
    refused = await fails(_embed(second, "openai/gpt-test", ["a third account, the same address"]))
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED and refused.reason == "MODEL_BUSY"
    openai.release()
    openai.release()
    assert len(_vectors(await running)) == len(_vectors(await queued)) == 1
