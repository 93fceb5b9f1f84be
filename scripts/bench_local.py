"""The real local model through the router (issue 21), used by scripts/bench's `local-model` scenario.

llama-cpp-python's OpenAI-compatible server with SmolLM2 runs once; in the same run, alternating rounds read
the same streamed answers from it with a bare httpx client and through the router (`local/smollm2`, a
`devpynode serve` whose local provider is that server), one stream at a time and four at once. The model is
the bottleneck (it serves one request at a time, ~90 tokens/s on an idle machine), so the figures say what the
relay costs a real model: tokens/s at least 0.9x direct, first token at most +3 ms (p50). A round is a batch of
`concurrency` answers started at once on one side, then the same on the other; the answers are the same on both
sides (temperature 0, one prompt), so both count the same tokens. The model's own speed varies with the
machine's load, which hits both sides of a round alike: medians of per-round ratios and differences.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from bench_ai import Reader
from bench_report import Outcome, Paired, paired_rounds, verdict
from devpynode.ai.v1 import ai_pb2

MODEL = "smollm2"
TOKENS = 24  # per answer in the throughput rounds
FIRST_TOKENS = 2  # per answer in the first-token rounds: short, so many rounds fit
PROMPT = "Write a long story about a cat who learns to sail across the sea."
CONCURRENCY = (1, 4)


def generate_request(max_tokens: int) -> ai_pb2.GenerateRequest:
    return ai_pb2.GenerateRequest(
        model=f"local/{MODEL}",
        messages=[ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content=PROMPT)],
        options=ai_pb2.GenerateOptions(max_tokens=max_tokens, temperature=0.0, seed=1, no_cache=True),
    )


def direct_reader(client: httpx.AsyncClient, max_tokens: int) -> Reader:
    """A bare OpenAI-compatible client: the same request the router's adapter sends, tokens counted as chunks, its
    connections kept (each response read to its end) like the adapter's."""
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": 1,
    }

    async def read() -> tuple[int, float]:
        started = time.perf_counter()
        first = 0.0
        tokens = 0
        async with client.stream("POST", "chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    continue  # read on to the body's end, as the router's adapter does: the connection is kept
                for choice in json.loads(data).get("choices") or ():
                    if (choice.get("delta") or {}).get("content"):
                        tokens += 1
                        if not first:
                            first = time.perf_counter() - started
        return tokens, first

    return read


@dataclass
class Batch:
    """`concurrency` answers started at once: their tokens, the wall time, each one's first token."""

    tokens: int
    seconds: float
    first_tokens: list[float]

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds

    @property
    def first_token_ms(self) -> float:
        return statistics.median(self.first_tokens) * 1000


async def batch(read: Reader, concurrency: int) -> Batch:
    started = time.perf_counter()
    answers = await asyncio.gather(*(read() for _ in range(concurrency)))
    return Batch(sum(t for t, _ in answers), time.perf_counter() - started, [f for _, f in answers])


@dataclass
class Compared:
    """One concurrency's paired rounds: throughput (TOKENS-token answers) and first token (short answers)."""

    concurrency: int
    throughput: Paired[Batch]
    first: Paired[Batch]

    @property
    def ratio(self) -> float:
        return self.throughput.median(lambda b, r: r.tokens_per_second / b.tokens_per_second)

    @property
    def gap_ms(self) -> float:
        return self.first.median(lambda b, r: r.first_token_ms - b.first_token_ms)


async def compare(
    direct: Callable[[int], Reader], routed: Callable[[int], Reader], concurrency: int, rounds: int
) -> Compared:
    """Alternating rounds, direct then router: twice `rounds` of longer answers, and six times `rounds` of short
    ones (the model's speed varies from one answer to the next by more than the relay costs: medians need
    samples)."""
    long_direct, long_routed = direct(TOKENS), routed(TOKENS)
    await batch(long_direct, 1)  # warm both paths (connections, the model's prompt cache)
    await batch(long_routed, 1)
    throughput = await paired_rounds(
        rounds * 2, lambda: batch(long_direct, concurrency), lambda: batch(long_routed, concurrency)
    )
    short_direct, short_routed = direct(FIRST_TOKENS), routed(FIRST_TOKENS)
    first = await paired_rounds(
        rounds * 6, lambda: batch(short_direct, concurrency), lambda: batch(short_routed, concurrency)
    )
    return Compared(concurrency, throughput, first)


def report(runs: list[Compared]) -> Outcome:
    """Each concurrency's figures; the target holds at every one."""
    figures: dict[str, float] = {}
    ok = True
    for run in runs:
        c = run.concurrency
        direct_tps = statistics.median(b.tokens_per_second for b in run.throughput.bases)
        routed_tps = statistics.median(b.tokens_per_second for b in run.throughput.runs)
        direct_ttft = statistics.median(b.first_token_ms for b in run.first.bases)
        routed_ttft = statistics.median(b.first_token_ms for b in run.first.runs)
        ratios = run.throughput.ratios(lambda b, r: r.tokens_per_second / b.tokens_per_second)
        print(f"  c={c}: direct {direct_tps:6.1f} tokens/s, first token p50 {direct_ttft:7.1f} ms")
        print(f"       router {routed_tps:6.1f} tokens/s, first token p50 {routed_ttft:7.1f} ms")
        print(f"       (per-round tokens/s ratios {', '.join(f'{x:.2f}' for x in ratios)})")
        met = run.ratio >= 0.9 and run.gap_ms <= 3.0
        ok = ok and met
        print(
            f"  -> c={c}: router tokens/s {run.ratio:.3f}x direct (target >= 0.90x); first token "
            f"{run.gap_ms:+.2f} ms p50 over {len(run.first.bases)} paired rounds (target <= +3 ms) {verdict(met)}"
        )
        figures[f"c{c}_tokens_per_second_ratio"] = run.ratio
        figures[f"c{c}_first_token_gap_ms"] = run.gap_ms
        figures[f"c{c}_direct_tokens_per_second"] = direct_tps
        figures[f"c{c}_direct_first_token_ms"] = direct_ttft
    return Outcome(figures, "tokens/s >= 0.9x direct, first token <= +3 ms (p50), c=1 and c=4", ok)
