"""Fair shares of the AI router: turns across users, per-address caps, the slot-hold ceiling, bounded pacing,
reserved token budgets, bounded metric labels, a breaker that counts failures in a row, and GetUsage's
time range."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from devpynode.ai.v1 import ai_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from prometheus_client import generate_latest

from pynode.ai.routing import Gate
from pynode.core.errors import QuotaExceeded
from tests.ai.conftest import AIClient, stream_error
from tests.ai.fakes import FakeProvider
from tests.client import MeshClient, eventually, rich_error


async def _usage(client: AIClient) -> ai_pb2.GetUsageResponse:
    await client.parts.service.drain()
    response: ai_pb2.GetUsageResponse = await client.stub.GetUsage(ai_pb2.GetUsageRequest(), metadata=client.user.md())
    return response


async def test_waiting_generations_take_turns_across_users() -> None:
    gate = Gate("builtin/echo", 1, 12)  # a quarter of 12: three waiting per user
    await gate.acquire("a")  # running: every later one waits
    order: list[str] = []

    async def wait(lane: str, name: str) -> None:
        await gate.acquire(lane)
        order.append(name)

    waiters = [asyncio.create_task(wait("a", f"a{i}")) for i in range(3)]
    await eventually(lambda: gate.waiting == 3)
    waiters.append(asyncio.create_task(wait("b", "b0")))  # came last, with one request
    await eventually(lambda: gate.waiting == 4)
    for admitted in range(1, 5):
        gate.release()
        await eventually(lambda: len(order) == admitted)  # noqa: B023 - read at once
    assert order == ["a0", "b0", "a1", "a2"]  # b waited one turn, not behind all of a's queue
    await asyncio.gather(*waiters)


async def test_one_users_share_of_the_queue_is_bounded_and_a_handed_over_slot_is_passed_on() -> None:
    gate = Gate("builtin/echo", 1, 4)  # a quarter of 4: one waiting per user
    await gate.acquire("a")
    first = asyncio.create_task(gate.acquire("a"))
    await eventually(lambda: gate.waiting == 1)
    with pytest.raises(QuotaExceeded) as refused:
        await gate.acquire("a")
    assert refused.value.reason == "MODEL_BUSY" and refused.value.retry_after > 0
    assert refused.value.violations[0].subject == "deployment:builtin/echo:per_user"
    other = asyncio.create_task(gate.acquire("b"))
    await eventually(lambda: gate.waiting == 2)
    gate.release()  # handed to a's waiter, which goes away before it runs: b gets the slot
    first.cancel()
    await other
    assert gate.active == 1 and gate.waiting == 0
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_accounts_from_one_address_share_its_cap(ai: Any) -> None:
    client: AIClient = await ai(ai_streams_per_address=2)
    address = client.user.address
    users = [client]
    for _ in range(2):
        same = AIClient(MeshClient(client.user.channel, address), client.mesh)
        await same.user.register()
        users.append(same)
    slow = [u.generate("builtin/echo", "slow words here", tokens_per_second=1, max_tokens=3) for u in users[:2]]
    for call in slow:
        await call.read()
    _, raised = await stream_error(users[2].generate("builtin/echo", "a new account, the same address"))
    error = rich_error(raised)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason == "TOO_MANY_STREAMS"
    assert error.detail(error_details_pb2.QuotaFailure).violations[0].subject == "ai:streams_per_address"
    elsewhere = AIClient(client.user.as_other_address(), client.mesh)
    await elsewhere.user.register()
    assert (await elsewhere.ask("builtin/echo", "another address")).text == "another address"
    for call in slow:
        call.cancel()


async def test_a_generation_holds_its_slot_no_longer_than_the_ceiling(ai: Any, openai: FakeProvider) -> None:
    client: AIClient = await ai(ai_max_generation_seconds=0.5)
    openai.script.delay = 2.0  # six tokens would take ten seconds
    answer = await client.ask("openai/gpt-test", no_cache=True)
    assert answer.last.finish_reason == ai_pb2.FINISH_REASON_TIME_LIMIT
    assert 1 <= answer.last.usage.completion_tokens < 6
    await eventually(lambda: openai.disconnects == 1)  # the upstream request is closed with it
    assert client.parts.router.gate("openai/gpt-test").active == 0


async def test_a_caller_chosen_pace_must_let_max_tokens_finish_within_the_ceiling(ai: Any) -> None:
    client: AIClient = await ai()
    _, raised = await stream_error(client.generate("builtin/echo", tokens_per_second=1, max_tokens=32768))
    error = rich_error(raised)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.violations() == {"options.tokens_per_second": "OUT_OF_RANGE"}
    assert "at least 55" in error.message  # 32768 tokens in 600 s
    paced = await client.ask("builtin/echo", "fast enough", tokens_per_second=55, max_tokens=32768)
    assert paced.text == "fast enough"


async def test_the_daily_budget_reserves_the_prompt_and_max_tokens_before_the_model_runs(ai: Any) -> None:
    client: AIClient = await ai(ai_tokens_per_day=5000)
    huge = ai_pb2.GenerateRequest(
        model="builtin/echo",
        messages=[ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content="word " * 50_000) for _ in range(8)],
    )
    _, raised = await stream_error(client.stub.Generate(huge, metadata=client.user.md(), timeout=30))
    error = rich_error(raised)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason == "TOKEN_BUDGET_EXHAUSTED"
    assert error.detail(error_details_pb2.QuotaFailure).violations[0].subject == "ai:tokens_per_day"
    assert error.detail(error_details_pb2.RetryInfo).retry_delay.seconds > 0
    assert not (await _usage(client)).models  # nothing ran, nothing was spent
    assert (await client.ask("builtin/echo", "still within budget")).text == "still within budget"


async def test_what_is_left_of_the_budget_caps_max_tokens_and_is_settled_to_what_was_used(ai: Any) -> None:
    client: AIClient = await ai(ai_tokens_per_day=30)
    words = " ".join(f"w{i}" for i in range(20))  # 20 tokens of prompt: 10 left to answer with
    cut = await client.ask("builtin/echo", words)
    assert cut.last.finish_reason == ai_pb2.FINISH_REASON_LENGTH and cut.last.usage.completion_tokens == 10
    total = (await _usage(client)).total
    assert total.prompt_tokens + total.completion_tokens == 30
    _, raised = await stream_error(client.generate("builtin/echo", "more"))
    assert rich_error(raised).reason == "TOKEN_BUDGET_EXHAUSTED"
    roomy: AIClient = await ai(ai_tokens_per_day=100)
    await roomy.ask("builtin/echo", "two words")  # reserves 2 + 2048 but spends 4: the rest comes back
    await roomy.parts.service.drain()
    assert (await roomy.ask("builtin/echo", " ".join(["x"] * 40))).last.usage.completion_tokens == 40


async def test_cache_lookups_are_labelled_by_what_answered_never_by_invented_names(ai: Any) -> None:
    client: AIClient = await ai()
    for invented in ("invented-alias-1", "builtin/invented-2"):
        _, raised = await stream_error(client.generate(invented, temperature=0))
        assert raised.code() == grpc.StatusCode.NOT_FOUND
    await client.ask("builtin/echo", "labelled", temperature=0)
    await client.ask("builtin/echo", "labelled", temperature=0)
    text = generate_latest(client.mesh.metrics.registry).decode()
    lookups = [line for line in text.splitlines() if line.startswith("devpynode_ai_cache_lookups_total{")]
    assert not [line for line in lookups if "invented" in line]
    assert 'devpynode_ai_cache_lookups_total{model="echo",provider="builtin",result="miss"} 1.0' in lookups
    assert 'devpynode_ai_cache_lookups_total{model="echo",provider="builtin",result="hit"} 1.0' in lookups


async def test_the_breaker_counts_failures_in_a_row_only(ai: Any, openai: FakeProvider) -> None:
    client: AIClient = await ai()
    for failing in (True, False, False, False) * 2 + (True,):  # one request in four fails: three failures
        openai.script.status = 503 if failing else 200
        answer = await client.ask("openai/gpt-test", "hi", fallback_models=["builtin/echo"], no_cache=True)
        assert answer.last.model == ("builtin/echo" if failing else "openai/gpt-test")
    openai.script.status = 200
    answer = await client.ask("openai/gpt-test", "hi", fallback_models=["builtin/echo"], no_cache=True)
    assert answer.last.model == "openai/gpt-test"  # never three in a row: not cooling down


@pytest.mark.parametrize(
    ("seconds", "nanos", "field"),
    [
        (0, -1, "start_time.nanos"),
        (0, 1_000_000_000, "start_time.nanos"),
        (-62_135_596_801, 0, "start_time.seconds"),  # year 0
        (253_402_300_800, 0, "start_time.seconds"),  # year 10000
    ],
)
async def test_get_usage_refuses_times_outside_the_timestamp_range(
    ai: Any, seconds: int, nanos: int, field: str
) -> None:
    client: AIClient = await ai()
    request = ai_pb2.GetUsageRequest(start_time=Timestamp(seconds=seconds, nanos=nanos))
    try:
        await client.stub.GetUsage(request, metadata=client.user.md())
    except grpc.aio.AioRpcError as raised:
        error = rich_error(raised)
    else:
        raise AssertionError("GetUsage took a time outside the Timestamp range")
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and field in error.violations()
    edge = ai_pb2.GetUsageRequest(end_time=Timestamp(seconds=253_402_300_799, nanos=999_999_999))
    assert not (await client.stub.GetUsage(edge, metadata=client.user.md())).models


async def test_invented_model_names_leave_no_metric_series_and_no_lasting_router_state(
    ai: Any, openai: FakeProvider
) -> None:
    # An outside attack grew two /metrics series and a gate and breaker per `openai/<invented>` name.
    client: AIClient = await ai()
    router = client.parts.router
    await client.ask("openai/gpt-test", "listed", no_cache=True)
    await router.models()  # the catalog lists openai/gpt-test
    openai.script.status = 404
    for i in range(300):
        _, raised = await stream_error(client.generate(f"openai/invented-{i}", no_cache=True))
        assert raised.code() == grpc.StatusCode.NOT_FOUND
    openai.script.status = 200
    text = generate_latest(client.mesh.metrics.registry).decode()
    assert "invented" not in text
    assert len(router.gates) <= 256 and len(router.breakers) <= 256
    assert "openai/gpt-test" in router.gates  # a listed deployment keeps its gate (and its series)
