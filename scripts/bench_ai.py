"""AI router benchmarks (issue 9), used by scripts/bench.

relay     `builtin/echo` through the router at full speed vs a bare grpc.aio server streaming the same
          GenerateResponse messages (one per token): tokens/s >= 0.7x at concurrency 16, and the router's
          time to first token within 2 ms (p50) of the bare stream's.
upstream  an OpenAI-compatible upstream (a fast local SSE server) relayed through the router vs a bare httpx
          client reading the same upstream: tokens/s >= 0.3x at concurrency 16, and at most 2 ms added to
          the time to first token (p50).

Time to first token is compared at the same offered load: both sides paced at PACE tokens/s (a model's
speed), 16 streams at once. At full speed the two sides run at different stream rates (the router
coalesces, so it completes many more streams per second) and a closed loop's first-token time then
measures queueing behind those other streams, not what the relay adds; those figures are printed too.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from bench_report import Outcome, paired_rounds, verdict
from devpynode.ai.v1 import ai_pb2, ai_pb2_grpc

TOKENS = 256
PROMPT = " ".join(f"w{i}" for i in range(TOKENS))
PACE = 100  # tokens/s of the paced runs
PACED_TOKENS = 32
PACED_PROMPT = " ".join(f"w{i}" for i in range(PACED_TOKENS))
# The chat fan-out's model (`openai/bench-fanout`): a 500-token answer at a fast model's speed.
FANOUT_TOKENS = 500
FANOUT_PACE = 500


@dataclass
class Streams:
    """What one load run of streams measured."""

    label: str
    tokens: int = 0
    streams: int = 0
    errors: int = 0
    seconds: float = 0.0
    first_tokens: list[float] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def ttft_p50(self) -> float:
        return statistics.median(self.first_tokens) * 1000 if self.first_tokens else float("nan")

    def line(self) -> str:
        return (
            f"  {self.label:<40} {self.tokens_per_second:10.0f} tokens/s   {self.streams / self.seconds:7.1f} "
            f"streams/s   first token p50 {self.ttft_p50():6.2f} ms   errors {self.errors}"
        )


# A stream reader returns (tokens, seconds to the first token).
Reader = Callable[[], Awaitable[tuple[int, float]]]


async def drive_streams(label: str, read: Reader, concurrency: int, seconds: float) -> Streams:
    """`concurrency` workers read streams back to back for `seconds` (after a short warm-up)."""
    warm_until = time.perf_counter() + min(1.0, seconds / 4)
    while time.perf_counter() < warm_until:
        await read()
    result = Streams(label)
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            try:
                tokens, first = await read()
            except (grpc.aio.AioRpcError, httpx.HTTPError):
                result.errors += 1
                continue
            result.tokens += tokens
            result.streams += 1
            result.first_tokens.append(first)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - began
    return result


def merge(label: str, runs: list[Streams]) -> Streams:
    return Streams(
        label,
        sum(r.tokens for r in runs),
        sum(r.streams for r in runs),
        sum(r.errors for r in runs),
        sum(r.seconds for r in runs),
        [x for r in runs for x in r.first_tokens],
    )


async def paired_streams(
    base: tuple[str, Reader], routed: tuple[str, Reader], concurrency: int, seconds: float, rounds: int
) -> tuple[Streams, Streams, float, float]:
    """Alternating rounds; returns both merged runs, the median per-round tokens/s ratio and the median
    per-round first-token difference (ms)."""
    found = await paired_rounds(
        rounds,
        lambda: drive_streams(base[0], base[1], concurrency, seconds / rounds),
        lambda: drive_streams(routed[0], routed[1], concurrency, seconds / rounds),
    )
    bases, routes = found.bases, found.runs
    ratios = [r.tokens_per_second / b.tokens_per_second for b, r in zip(bases, routes, strict=True)]
    gaps = [r.ttft_p50() - b.ttft_p50() for b, r in zip(bases, routes, strict=True)]
    print(
        f"  (per-round tokens/s ratios: {', '.join(f'{x:.2f}' for x in ratios)}; first-token gaps ms: "
        f"{', '.join(f'{x:.2f}' for x in gaps)})"
    )
    return merge(base[0], bases), merge(routed[0], routes), statistics.median(ratios), statistics.median(gaps)


def generate_request(model: str, paced: bool = False) -> ai_pb2.GenerateRequest:
    return ai_pb2.GenerateRequest(
        model=model,
        messages=[ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content=PACED_PROMPT if paced else PROMPT)],
        options=ai_pb2.GenerateOptions(max_tokens=TOKENS, no_cache=True, tokens_per_second=PACE if paced else 0),
    )


def grpc_reader(stub: ai_pb2_grpc.AIRouterServiceStub, request: ai_pb2.GenerateRequest, metadata: Any) -> Reader:
    async def read() -> tuple[int, float]:
        started = time.perf_counter()
        first = 0.0
        tokens = 0
        async for piece in stub.Generate(request, metadata=metadata):  # type: ignore[attr-defined]
            if piece.text and not first:
                first = time.perf_counter() - started
            if piece.finish_reason:
                tokens = piece.usage.completion_tokens
        return tokens, first

    return read


def httpx_reader(client: httpx.AsyncClient, model: str = "bench") -> Reader:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "go"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    async def read() -> tuple[int, float]:
        started = time.perf_counter()
        first = 0.0
        tokens = 0
        async with client.stream("POST", "chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                for choice in event.get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        tokens += 1
                        if not first:
                            first = time.perf_counter() - started
        return tokens, first

    return read


# --- the baselines' servers ----------------------------------------------------------------------


async def bare_generate(request: ai_pb2.GenerateRequest, context: Any) -> Any:
    """The bare stream: the echo model's messages, one per token, from a plain grpc.aio handler."""
    words = request.messages[-1].content.split(" ")
    pace = request.options.tokens_per_second
    start = time.monotonic()
    for i, word in enumerate(words):
        if pace:
            await asyncio.sleep(max(0.0, start + i / pace - time.monotonic()))
        yield ai_pb2.GenerateResponse(text=word if i == len(words) - 1 else word + " ", model="builtin/echo")
    yield ai_pb2.GenerateResponse(
        model="builtin/echo",
        finish_reason=ai_pb2.FINISH_REASON_STOP,
        usage=ai_pb2.Usage(prompt_tokens=len(words), completion_tokens=len(words)),
    )


def bare_generate_handler() -> Any:
    return grpc.method_handlers_generic_handler(
        "devpynode.ai.v1.AIRouterService",
        {
            "Generate": grpc.unary_stream_rpc_method_handler(
                bare_generate,
                request_deserializer=ai_pb2.GenerateRequest.FromString,
                response_serializer=ai_pb2.GenerateResponse.SerializeToString,
            )
        },
    )


def _sse_events(tokens: int) -> list[bytes]:
    """One whole streamed chat completion, as an OpenAI-compatible server sends it (chunked)."""

    def event(payload: dict[str, Any]) -> bytes:
        data = b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1764547200,
            "model": "bench",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    parts = [event(chunk({"role": "assistant", "content": ""}, None))]
    parts += [event(chunk({"content": f"w{i} "}, None)) for i in range(tokens)]
    parts.append(event(chunk({}, "stop")))
    usage = {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}
    parts.append(
        event(
            {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": "bench", "choices": [], "usage": usage}
        )
    )
    done = b"data: [DONE]\n\n"
    parts.append(f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n")
    return parts


async def serve_sse(port_file: Path) -> None:
    """A fast OpenAI-compatible upstream: every chat completion streams TOKENS tokens at once (HTTP/1.1,
    keep-alive), so the comparison measures the clients, not the upstream."""
    body = b"".join(_sse_events(TOKENS))
    paced_events = _sse_events(PACED_TOKENS)
    fanout_events = _sse_events(FANOUT_TOKENS)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    listed = [{"id": name, "object": "model"} for name in ("bench", "bench-paced", "bench-fanout")]
    models = json.dumps({"object": "list", "data": listed}).encode()
    models_answer = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(models)).encode()
        + b"\r\n\r\n"
        + models
    )

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in request.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                payload = await reader.readexactly(length) if length else b""
                if request.startswith(b"GET"):
                    writer.write(models_answer)
                elif b'"bench-paced"' in payload:
                    await _paced(writer, head, paced_events, PACE)
                elif b'"bench-fanout"' in payload:
                    await _paced(writer, head, fanout_events, FANOUT_PACE)
                else:
                    writer.write(head + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


async def _paced(writer: asyncio.StreamWriter, head: bytes, events: list[bytes], pace: float) -> None:
    """The events one every 1/pace s (the role chunk and the first token at once), as a model server
    streams them."""
    writer.write(head)
    start = time.monotonic()
    for i, event in enumerate(events):
        await asyncio.sleep(max(0.0, start + max(0, i - 1) / pace - time.monotonic()))
        writer.write(event)
        await writer.drain()


def report(
    label: str, full: tuple[Streams, Streams, float, float], paced: tuple[Streams, Streams, float, float], target: float
) -> Outcome:
    base, routed, ratio, full_gap = full
    paced_base, paced_routed, _, gap = paced
    for run in (base, routed, paced_base, paced_routed):
        print(run.line())
    errors = sum(r.errors for r in (base, routed, paced_base, paced_routed))
    ok = ratio >= target and gap <= 2.0 and errors == 0
    print(
        f"  -> {label}: tokens/s {ratio:.2f}x of the baseline at full speed (target >= {target:.1f}x); first token "
        f"{gap:+.2f} ms p50 at {PACE} tokens/s (target <= +2 ms) {verdict(ok)}; at full speed "
        f"{full_gap:+.2f} ms (queueing behind a different stream rate)"
    )
    return Outcome(
        {"tokens_per_second_ratio": ratio, "first_token_gap_ms": gap, "errors": errors},
        f"tokens/s >= {target:.1f}x, first token <= +2 ms",
        ok,
    )
