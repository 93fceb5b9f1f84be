"""Chat benchmarks (issue 10), used by scripts/bench.

chat      client -> chat -> AI router -> `builtin/echo` vs a bare grpcio stream of the same tokens:
          time to first token within 5 ms (p50) of the bare stream's, measured one stream at a time (no
          queueing: what the chat path adds to one answer); tokens/s at concurrency 16 >= 0.5x the bare
          stream's.
fanout    200 StreamEvents subscribers on one conversation all receive every event of a 500-token answer
          (an OpenAI-compatible upstream streaming 500 tokens at 500 tokens/s, so that it comes as many
          deltas rather than a few coalesced ones), in order, with no gap; the fan-out delay (a delta's
          arrival at a subscriber minus its arrival on the sender's SendMessage stream) is reported at p50
          and p99.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import bench_ai
import grpc
from bench_report import Outcome, paired_rounds, verdict
from devpynode.ai.v1 import ai_pb2, ai_pb2_grpc
from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc
from devpynode.chat.v1 import chat_pb2, chat_pb2_grpc

TOKENS = 256
TEXT = " ".join(f"w{i}" for i in range(TOKENS))
SUBSCRIBERS = 200


def chat_reader(stub: Any, conversation_ids: list[str], metadata: Any) -> bench_ai.Reader:
    """SendMessage to the next of several conversations (one per concurrent stream)."""
    turn = iter(range(10**12))

    async def read() -> tuple[int, float]:
        conversation_id = conversation_ids[next(turn) % len(conversation_ids)]
        started = time.perf_counter()
        first = 0.0
        tokens = 0
        request = chat_pb2.SendMessageRequest(conversation_id=conversation_id, text=TEXT)
        async for response in stub.SendMessage(request, metadata=metadata):
            kind = response.WhichOneof("event")
            if kind == "delta" and not first:
                first = time.perf_counter() - started
            elif kind == "assistant_message":
                if response.assistant_message.state != chat_pb2.MESSAGE_STATE_COMPLETE:
                    raise RuntimeError(f"reply ended {response.assistant_message.error}")
                tokens = response.assistant_message.usage.completion_tokens
        return tokens, first

    return read


async def _conversations(stub: Any, count: int, metadata: Any) -> list[str]:
    created = []
    for i in range(count):
        request = chat_pb2.CreateConversationRequest(title=f"bench {i}", model="builtin/echo")
        created.append((await stub.CreateConversation(request, metadata=metadata)).conversation.id)
    return created


async def latency(label: str, read: bench_ai.Reader, samples: int) -> list[float]:
    """First-token times of `samples` streams, one at a time (after a few to warm up)."""
    for _ in range(3):
        await read()
    found = []
    for _ in range(samples):
        _, first = await read()
        found.append(first)
    print(f"  {label:<40} first token p50 {statistics.median(found) * 1000:6.2f} ms (one stream at a time)")
    return found


async def chat_scenario(
    echo_channel: grpc.aio.Channel,
    mesh_channel: grpc.aio.Channel,
    bearer: Any,
    concurrency: int,
    seconds: float,
    rounds: int,
) -> Outcome:
    chat: Any = chat_pb2_grpc.ChatServiceStub(mesh_channel)
    bare = ai_pb2_grpc.AIRouterServiceStub(echo_channel)
    request = ai_pb2.GenerateRequest(
        model="builtin/echo",
        messages=[ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content=TEXT)],
        options=ai_pb2.GenerateOptions(max_tokens=TOKENS, no_cache=True),
    )
    base_reader = bench_ai.grpc_reader(bare, request, ())
    conversations = await _conversations(chat, concurrency, bearer)
    routed = chat_reader(chat, conversations, bearer)
    samples = max(30, int(seconds * 10))
    first = await paired_rounds(
        rounds,
        lambda: latency("baseline: bare grpcio token stream", base_reader, samples // rounds),
        lambda: latency(
            "chat: SendMessage (builtin/echo)", chat_reader(chat, conversations[:1], bearer), samples // rounds
        ),
    )
    gaps = first.ratios(lambda base, mine: (statistics.median(mine) - statistics.median(base)) * 1000)
    gap = statistics.median(gaps)
    full = await bench_ai.paired_streams(
        ("baseline: bare grpcio token stream", base_reader), ("chat: SendMessage (builtin/echo)", routed),
        concurrency, seconds, rounds,
    )  # fmt: skip
    base_run, chat_run, ratio, _ = full
    print(base_run.line())
    print(chat_run.line())
    ok = gap <= 5.0 and ratio >= 0.5 and chat_run.errors == 0
    print(
        f"  -> chat: first token {gap:+.2f} ms p50 vs the bare stream (target <= +5 ms; per round "
        f"{', '.join(f'{g:+.2f}' for g in gaps)}); tokens/s {ratio:.2f}x at concurrency {concurrency} "
        f"(target >= 0.5x) {verdict(ok)}"
    )
    return Outcome(
        {"first_token_gap_ms": gap, "tokens_per_second_ratio": ratio, "errors": chat_run.errors},
        "first token <= +5 ms p50, tokens/s >= 0.5x",
        ok,
    )


async def fanout_scenario(mesh_channel: grpc.aio.Channel, mesh_address: str, bearer: Any) -> Outcome:
    chat: Any = chat_pb2_grpc.ChatServiceStub(mesh_channel)
    # The server allows 100 calls at once per connection (as a browser's HTTP/2 connection would): the
    # subscribers come over several connections, like the many clients they stand for.
    # A local subchannel pool: otherwise grpc-core shares one connection between the channels.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(mesh_address, options=options) for _ in range(SUBSCRIBERS // 50)]
    try:
        return await _fanout(chat, [chat_pb2_grpc.ChatServiceStub(c) for c in channels], mesh_channel, bearer)
    finally:
        for channel in channels:
            await channel.close()


async def _fanout(
    chat: Any,
    subscribers: list[Any],
    mesh_channel: grpc.aio.Channel,
    bearer: Any,
) -> Outcome:
    auth: Any = auth_pb2_grpc.AuthServiceStub(mesh_channel)
    created = await chat.CreateConversation(
        chat_pb2.CreateConversationRequest(title="fan-out", model="openai/bench-fanout"), metadata=bearer
    )
    conversation_id = created.conversation.id
    # One subscriber account is enough: each StreamEvents call is its own subscription.
    other = await auth.Register(
        auth_pb2.RegisterRequest(
            email=f"fanout-{time.time_ns()}@example.com", password="bench password that is long", display_name="Fan-out"
        )
    )
    await chat.AddMember(
        chat_pb2.AddMemberRequest(conversation_id=conversation_id, user_id=other.user.id), metadata=bearer
    )
    watcher = [("authorization", f"Bearer {other.tokens.access_token}")]
    # An invitation makes a member only once accepted.
    await chat.AcceptInvitation(chat_pb2.AcceptInvitationRequest(conversation_id=conversation_id), metadata=watcher)
    arrivals: list[dict[int, float]] = [{} for _ in range(SUBSCRIBERS)]
    texts: list[list[str]] = [[] for _ in range(SUBSCRIBERS)]
    ready = asyncio.Semaphore(0)
    done = [asyncio.Event() for _ in range(SUBSCRIBERS)]

    async def subscribe(i: int) -> None:
        stub: Any = subscribers[i % len(subscribers)]
        call = stub.StreamEvents(chat_pb2.StreamEventsRequest(conversation_id=conversation_id), metadata=watcher)
        async for event in call:
            kind = event.WhichOneof("event")
            if kind == "ready":
                ready.release()
            elif kind == "delta":
                arrivals[i][event.delta.seq] = time.perf_counter()
                texts[i].append(event.delta.text)
            elif (
                kind == "message"
                and event.message.role == chat_pb2.MESSAGE_ROLE_ASSISTANT
                and event.message.state != chat_pb2.MESSAGE_STATE_STREAMING
            ):
                done[i].set()
                call.cancel()
                return

    tasks = [asyncio.get_running_loop().create_task(subscribe(i)) for i in range(SUBSCRIBERS)]
    try:
        for _ in range(SUBSCRIBERS):
            await asyncio.wait_for(ready.acquire(), 60)
    except TimeoutError:
        failures = [t.exception() for t in tasks if t.done() and t.exception()]
        print(f"  fan-out: only {ready._value} subscribers started; {len(failures)} failed: {failures[:1]} FAIL")
        for task in tasks:
            task.cancel()
        return Outcome({"subscribers_started": float(ready._value)}, "every subscriber starts", False)
    sent_at: dict[int, float] = {}
    answer = []
    request = chat_pb2.SendMessageRequest(conversation_id=conversation_id, text="go")
    async for response in chat.SendMessage(request, metadata=bearer):
        if response.WhichOneof("event") == "delta":
            sent_at[response.delta.seq] = time.perf_counter()
            answer.append(response.delta.text)
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in done)), 120)
    await asyncio.gather(*tasks, return_exceptions=True)
    full = "".join(answer)
    complete = sum(1 for t in texts if "".join(t) == full)
    in_order = sum(1 for a in arrivals if sorted(a) == list(range(len(a))) and len(a) > 0)
    delays = [max(0.0, at - sent_at[seq]) for a in arrivals for seq, at in a.items() if seq in sent_at]
    delays.sort()
    p50 = delays[len(delays) // 2] * 1000 if delays else float("nan")
    p99 = delays[int(len(delays) * 0.99)] * 1000 if delays else float("nan")
    ok = complete == SUBSCRIBERS and in_order == SUBSCRIBERS and len(full.split()) == bench_ai.FANOUT_TOKENS
    print(
        f"  fan-out: {SUBSCRIBERS} subscribers, {bench_ai.FANOUT_TOKENS}-token answer in {len(answer)} deltas; "
        f"{complete}/{SUBSCRIBERS} got the whole text, {in_order}/{SUBSCRIBERS} every delta in order; delay after "
        f"the sender's stream p50 {p50:.2f} ms, p99 {p99:.2f} ms {verdict(ok)}"
    )
    return Outcome(
        {"complete": complete, "in_order": in_order, "delay_p50_ms": p50, "delay_p99_ms": p99},
        f"all {SUBSCRIBERS} subscribers get every delta in order",
        ok,
    )
