"""Generate over the built-in model and real clients against faithful fake providers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest
from devpynode.ai.v1 import ai_pb2
from google.rpc import error_details_pb2

from tests.ai.conftest import API_KEY, AIClient, Answer, stream_error
from tests.ai.fakes import FakeProvider
from tests.client import eventually, rich_error


async def _ledger(client: AIClient) -> list[ai_pb2.ModelUsage]:
    usage = await client.stub.GetUsage(ai_pb2.GetUsageRequest(), metadata=client.user.md())
    return list(usage.models)


async def test_builtin_echo_streams_the_last_user_message_word_by_word(ai: Any) -> None:
    client: AIClient = await ai()
    answer = await client.ask("builtin/echo", "the quick  brown fox", tokens_per_second=50)
    assert [p.text for p in answer.pieces[:-1]] == ["the ", "quick  ", "brown ", "fox"]  # paced: a word a message
    assert answer.last.finish_reason == ai_pb2.FINISH_REASON_STOP and answer.last.model == "builtin/echo"
    assert answer.last.usage.completion_tokens == 4 and answer.last.usage.prompt_tokens == 4
    cut = await client.ask("builtin/echo", "one two three four five", max_tokens=2)
    assert cut.text == "one two " and cut.last.finish_reason == ai_pb2.FINISH_REASON_LENGTH
    fast = await client.ask("builtin/echo", " ".join(["word"] * 500))  # as fast as it can: deltas may coalesce
    assert fast.text == " ".join(["word"] * 500) and fast.last.usage.completion_tokens == 500
    assert fast.pieces[0].text == "word "  # the first token goes out alone, at once


async def test_default_resolves_to_the_builtin_model_when_nothing_else_answers(ai: Any) -> None:
    client: AIClient = await ai(ollama_url="http://127.0.0.1:9", openai_base_url="")
    answer = await client.ask("default", "still answered")
    assert answer.text == "still answered" and answer.last.model == "builtin/echo"


async def test_ollama_native_chat_streams_with_usage_and_options(ai: Any, ollama: FakeProvider) -> None:
    client: AIClient = await ai()
    answer = await client.ask("ollama/llama3.2:latest", "hi", temperature=0.5, seed=7, no_cache=True)
    assert answer.text == "Hello from the fake model."
    assert answer.last.usage.prompt_tokens == 11 and answer.last.usage.completion_tokens == 6
    request = ollama.chats[-1]
    assert request.path == "/api/chat" and request.body is not None
    assert request.body["stream"] is True and request.body["model"] == "llama3.2:latest"
    assert request.body["options"]["temperature"] == 0.5 and request.body["options"]["seed"] == 7
    assert request.body["messages"] == [{"role": "user", "content": "hi"}]


async def test_openai_compatible_streams_sse_with_the_usage_chunk(ai: Any, openai: FakeProvider) -> None:
    client: AIClient = await ai()
    answer = await client.ask("openai/gpt-test", "hi", max_tokens=3)
    assert answer.text == "Hello from the"
    assert answer.last.finish_reason == ai_pb2.FINISH_REASON_LENGTH
    assert answer.last.usage.prompt_tokens == 11 and answer.last.usage.completion_tokens == 3
    request = openai.chats[-1]
    assert request.path == "/v1/chat/completions" and request.body is not None
    assert request.body["stream_options"] == {"include_usage": True} and request.body["max_tokens"] == 3
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize("kind", ["ollama", "openai"])
async def test_provider_failures_map_to_statuses(
    ai: Any, ollama: FakeProvider, openai: FakeProvider, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    client: AIClient = await ai()
    fake, model = (ollama, "ollama/llama3.2:latest") if kind == "ollama" else (openai, "openai/gpt-test")
    cases: list[tuple[int, str, str | None, grpc.StatusCode, str]] = [
        (429, "slow down", "7", grpc.StatusCode.RESOURCE_EXHAUSTED, "PROVIDER_RATE_LIMITED"),
        (429, "slow down", None, grpc.StatusCode.RESOURCE_EXHAUSTED, "PROVIDER_RATE_LIMITED"),
        (503, "overloaded", None, grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
        (404, 'model "x" not found, try pulling it first', None, grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND"),
        (
            400,
            "This model's maximum context length is 8192 tokens",
            None,
            grpc.StatusCode.INVALID_ARGUMENT,
            "CONTEXT_TOO_LONG",
        ),
    ]
    with caplog.at_level(logging.DEBUG):
        for status, text, retry_after, code, reason in cases:
            fake.script.status, fake.script.error, fake.script.retry_after = status, text, retry_after
            _, raised = await stream_error(client.generate(model, no_cache=True))
            error = rich_error(raised)
            assert error.code == code and error.reason == reason, (status, error)
            assert API_KEY not in error.message
            if status == 429:
                delay = error.detail(error_details_pb2.RetryInfo).retry_delay.seconds
                assert delay == (7 if retry_after else 5)
                assert error.detail(error_details_pb2.QuotaFailure).violations
            if reason == "CONTEXT_TOO_LONG":
                assert error.violations() == {"messages": "CONTEXT_TOO_LONG"}
            client.parts.router.breakers.clear()  # these failures must not cool the model down between cases
    assert all(API_KEY not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("kind", ["ollama", "openai"])
async def test_a_stream_cut_mid_way_ends_with_the_error_and_partial_usage(
    ai: Any, ollama: FakeProvider, openai: FakeProvider, kind: str
) -> None:
    client: AIClient = await ai()
    fake, model = (ollama, "ollama/llama3.2:latest") if kind == "ollama" else (openai, "openai/gpt-test")
    fake.script.cut_after = 2
    pieces, raised = await stream_error(client.generate(model, fallback_models=["builtin/echo"], no_cache=True))
    assert raised.code() == grpc.StatusCode.UNAVAILABLE
    text = "".join(p.text for p in pieces)
    assert text == "Hello from"  # no fallback after output: nothing duplicated, nothing from another model
    assert pieces[-1].finish_reason == ai_pb2.FINISH_REASON_ERROR and pieces[-1].usage.completion_tokens == 2
    await client.parts.service.drain()
    usage = await _ledger(client)
    assert [(u.model, u.unfinished_requests, u.usage.completion_tokens) for u in usage] == [(model, 1, 2)]


async def test_a_fallback_before_the_first_token_and_none_after(ai: Any, openai: FakeProvider) -> None:
    client: AIClient = await ai()
    openai.script.status = 503
    answer = await client.ask("openai/gpt-test", "from the fallback", fallback_models=["builtin/echo"])
    assert answer.text == "from the fallback" and answer.last.model == "builtin/echo"


async def test_a_slow_first_token_falls_back_and_the_provider_sees_the_disconnect(
    ai: Any, openai: FakeProvider
) -> None:
    client: AIClient = await ai(ai_first_token_seconds=0.3)
    openai.script.first_delay = 5.0
    answer = await client.ask("openai/gpt-test", "quick one", fallback_models=["builtin/echo"], no_cache=True)
    assert answer.last.model == "builtin/echo"
    await eventually(lambda: openai.disconnects == 1)


@pytest.mark.parametrize("kind", ["ollama", "openai"])
async def test_cancelling_after_n_tokens_closes_upstream_and_records_n(
    ai: Any, ollama: FakeProvider, openai: FakeProvider, kind: str
) -> None:
    client: AIClient = await ai()
    fake, model = (ollama, "ollama/llama3.2:latest") if kind == "ollama" else (openai, "openai/gpt-test")
    fake.script.delay = 0.2
    call = client.generate(model, no_cache=True)
    received = 0
    async for _ in call:
        received += 1
        if received == 3:
            call.cancel()
            break
    await eventually(lambda: fake.disconnects == 1)
    assert fake.completed == 0
    await client.parts.service.drain()
    usage = await _ledger(client)
    assert [(u.model, u.unfinished_requests, u.usage.completion_tokens) for u in usage] == [(model, 1, 3)]


async def test_the_callers_deadline_closes_the_upstream_request(ai: Any, openai: FakeProvider) -> None:
    client: AIClient = await ai()
    openai.script.delay = 0.5
    _, raised = await stream_error(client.generate("openai/gpt-test", no_cache=True, timeout=0.8))
    assert raised.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await eventually(lambda: openai.disconnects == 1)


async def test_a_failing_deployment_cools_down_and_is_skipped(ai: Any, openai: FakeProvider) -> None:
    client: AIClient = await ai()
    openai.script.status = 503
    for _ in range(3):
        await stream_error(client.generate("openai/gpt-test", no_cache=True))
    asked = len(openai.chats)
    answer = await client.ask("openai/gpt-test", "skipped", fallback_models=["builtin/echo"], no_cache=True)
    assert answer.last.model == "builtin/echo" and len(openai.chats) == asked  # not even tried
    _, raised = await stream_error(client.generate("openai/gpt-test", no_cache=True))
    assert rich_error(raised).reason == "MODEL_COOLING_DOWN"


async def test_a_full_queue_is_refused_at_once(ai: Any, openai: FakeProvider) -> None:
    client: AIClient = await ai(ai_max_concurrency=1, ai_max_queue=0)
    openai.script.delay = 0.3
    first = client.generate("openai/gpt-test", no_cache=True)
    await first.read()  # running, holding the only slot
    _, raised = await stream_error(client.generate("openai/gpt-test", no_cache=True))
    error = rich_error(raised)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason == "MODEL_BUSY"
    first.cancel()


async def test_deterministic_answers_are_cached_and_replayed_as_streams(ai: Any, openai: FakeProvider) -> None:
    client: AIClient = await ai()
    fresh = await client.ask("openai/gpt-test", "cache me", temperature=0)
    again = await client.ask("openai/gpt-test", "cache me", temperature=0)
    assert again.text == fresh.text and again.last.cached and not fresh.last.cached
    assert len(again.pieces) >= 2 and len(openai.chats) == 1
    opted_out = await client.ask("openai/gpt-test", "cache me", temperature=0, no_cache=True)
    assert not opted_out.last.cached and len(openai.chats) == 2
    await client.ask("openai/gpt-test", "random", temperature=0.7)
    await client.ask("openai/gpt-test", "random", temperature=0.7)
    assert len(openai.chats) == 4  # not deterministic: never cached
    other = AIClient(client.user.as_other_address(), client.mesh)
    await other.user.register()
    theirs = await other.ask("openai/gpt-test", "cache me", temperature=0)
    assert not theirs.last.cached and len(openai.chats) == 5  # no one learns what others asked


async def test_a_cancelled_answer_is_never_cached(ai: Any, openai: FakeProvider) -> None:
    client: AIClient = await ai()
    openai.script.delay = 0.2
    call = client.generate("openai/gpt-test", seed=1)
    await call.read()
    call.cancel()
    await eventually(lambda: openai.disconnects == 1)
    openai.script.delay = 0
    answer = await client.ask("openai/gpt-test", seed=1)
    assert not answer.last.cached and len(openai.chats) == 2


async def test_an_unknown_model_is_not_found(ai: Any) -> None:
    client: AIClient = await ai()
    _, raised = await stream_error(client.generate("nosuchalias"))
    assert rich_error(raised).code == grpc.StatusCode.NOT_FOUND
    _, raised = await stream_error(client.generate("builtin/other"))
    assert rich_error(raised).reason == "MODEL_NOT_FOUND"


async def test_bad_requests_are_invalid_argument(ai: Any) -> None:
    client: AIClient = await ai()
    request = ai_pb2.GenerateRequest(
        model="builtin/echo",
        messages=[ai_pb2.ChatMessage(content="no role")],
        options=ai_pb2.GenerateOptions(temperature=3),
    )
    _, raised = await stream_error(client.stub.Generate(request, metadata=client.user.md()))
    error = rich_error(raised)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(error.violations()) == {"messages[0].role", "options.temperature"}


async def test_one_user_cannot_hold_every_slot(ai: Any) -> None:
    client: AIClient = await ai(ai_streams_per_user=2)
    slow = [client.generate("builtin/echo", "slow words here", tokens_per_second=1, max_tokens=3) for _ in range(2)]
    for call in slow:
        await call.read()
    _, raised = await stream_error(client.generate("builtin/echo", "a third"))
    error = rich_error(raised)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason == "TOO_MANY_STREAMS"
    other = AIClient(client.user.as_other_address(), client.mesh)
    await other.user.register()
    assert (await other.ask("builtin/echo", "others are served")).text == "others are served"
    for call in slow:
        call.cancel()
    await eventually(lambda: not client.parts.service.running())
    assert (await client.ask("builtin/echo", "and again")).text == "and again"


async def test_concurrent_generations_each_get_their_own_stream(ai: Any) -> None:
    # No per-user or per-address ceiling: 16 at once from one address would otherwise pass 8 whenever a
    # loaded machine keeps them all open together.
    client: AIClient = await ai(ai_streams_per_user=0, ai_streams_per_address=0)
    answers = await asyncio.gather(*(client.ask("builtin/echo", f"stream {i} of many") for i in range(16)))
    assert [a.text for a in answers] == [f"stream {i} of many" for i in range(16)]


async def _answered_once_freed(client: AIClient, text: str) -> Answer:
    """The answer to `text`, asked again while the cancelled streams still hold the user's slots (their ends
    reach the server a moment after the client cancels): refused with TOO_MANY_STREAMS until then."""
    deadline = asyncio.get_running_loop().time() + 5.0
    while True:
        try:
            return await client.ask("builtin/echo", text)
        except grpc.aio.AioRpcError as refused:
            if rich_error(refused).reason != "TOO_MANY_STREAMS":
                raise
            assert asyncio.get_running_loop().time() < deadline, "the cancelled streams never released their slots"
            await asyncio.sleep(0.005)


async def test_clients_cancelling_right_after_the_last_piece_leave_no_slot_taken(ai: Any) -> None:
    """A client that hangs up just after the last piece (the OpenAI door reading to `finish_reason`, or any gRPC
    client) cancels the call while the router closes the upstream: the deployment's slot must still be given
    back, or enough such calls leave the model busy for everyone (found by the door's benchmark)."""
    client: AIClient = await ai(ai_streams_per_user=0, ai_max_concurrency=8, ai_max_queue=4)
    request = client.request("builtin/echo", " ".join(["w"] * 64), tokens_per_second=0, no_cache=True)

    async def hang_up_at_the_end() -> None:
        call = client.stub.Generate(request, metadata=client.user.md(), timeout=5)
        async for piece in call:
            if piece.finish_reason:
                call.cancel()
                break

    for _ in range(40):
        ended = await asyncio.gather(*(hang_up_at_the_end() for _ in range(16)), return_exceptions=True)
        if any(isinstance(e, grpc.aio.AioRpcError) for e in ended):  # busy: slots leaked (the gates say so below)
            break
    await client.parts.service.drain()
    assert all(gate.active == 0 and gate.waiting == 0 for gate in client.parts.router.gates.values())
    assert (await client.ask("builtin/echo", "still answering", tokens_per_second=0)).text == "still answering"
