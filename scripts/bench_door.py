"""The doors on the HTTP port (issue 22), used by scripts/bench: each against the router's own gRPC in the same run.

door   `builtin/echo` through the OpenAI-compatible door (Envoy -> door -> router, OpenAI SSE with the usage chunk)
       vs the router's gRPC Generate straight to `serve`, at concurrency 16: tokens/s >= 0.5x at full speed, and
       the first token at most +2 ms (p50) at a model's pace (both sides at PACE tokens/s, as the relay scenario
       compares it). The door without Envoy is measured too, to show what each hop costs.
rest   a REST unary call through Envoy's transcoder (`GET /v1/users/me`) vs the same RPC (GetCurrentUser) over
       native gRPC straight to `serve`: >= 0.7x calls/s. gRPC through Envoy is printed as well.

Both start their own `devpynode serve` with its Envoy child (the laptop gateway); the load generator runs on its
own CPU and the server (with Envoy) on the others when pinning is on. Tokens are the router's count (the usage
chunk's `completion_tokens`): at full speed the router sends several tokens per message, so events are not tokens.
The door scenario also prints the CPU time `serve` and Envoy spent per 1,000 tokens on each side (from /proc):
unlike tokens/s it hardly moves with other sessions' load, and its ratio is what tokens/s tends to when the
server's CPU is the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import bench_ai
import grpc
import orjson
from bench_ai import Reader, Streams
from bench_report import Outcome, paired_rounds, verdict
from devpynode.ai.v1 import ai_pb2_grpc
from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc

PASSWORD = "bench password that is long"


def _failed(why: str) -> grpc.aio.AioRpcError:
    """An HTTP failure as the error the shared drivers count (they catch gRPC's)."""
    return grpc.aio.AioRpcError(grpc.StatusCode.UNKNOWN, grpc.aio.Metadata(), grpc.aio.Metadata(), why)


def door_reader(http: aiohttp.ClientSession, url: str, token: str, paced: bool) -> Reader:
    """One streamed chat completion read to its `[DONE]`: (tokens from the usage chunk, seconds to first text)."""
    body = orjson.dumps(
        {
            "model": "builtin/echo",
            "messages": [{"role": "user", "content": bench_ai.PACED_PROMPT if paced else bench_ai.PROMPT}],
            "max_tokens": bench_ai.TOKENS,
            "stream": True,
            "stream_options": {"include_usage": True},
            "tokens_per_second": bench_ai.PACE if paced else 0,
        }
    )
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

    async def read() -> tuple[int, float]:
        started = time.perf_counter()
        first = 0.0
        tokens = 0
        async with http.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                raise _failed(f"HTTP {response.status}")
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].strip()
                if data == b"[DONE]":
                    break
                if not first and b'"content":"' in data and b'"content":""' not in data:
                    first = time.perf_counter() - started
                if b'"usage":{' in data:
                    tokens = orjson.loads(data)["usage"]["completion_tokens"]
        return tokens, first

    return read


async def _reads(label: str, read: Reader, concurrency: int, seconds: float) -> Streams:
    """bench_ai.drive_streams, with the HTTP client's errors counted too."""

    async def guarded() -> tuple[int, float]:
        try:
            return await read()
        except aiohttp.ClientError as error:
            raise _failed(str(error)) from None

    return await bench_ai.drive_streams(label, guarded, concurrency, seconds)


async def _serve_with_gateway(
    workdir: Path, env: dict[str, str], name: str, start_process: Any, port: Callable[[], int]
) -> tuple[Any, int, int, int]:
    """`devpynode serve` with its Envoy child: (process, gRPC port, HTTP port, the door's own port)."""
    import re

    grpc_port, http_port = port(), port()
    served_env = {
        **env,
        "DEVPYNODE_DATA_DIR": str(workdir / f"data-{name}"),
        "DEVPYNODE_GRPC_PORT": str(grpc_port),
        "DEVPYNODE_HTTP_PORT": str(http_port),
        # The door passes the client's address on (Envoy's x-forwarded-for), so the bench's 16 streams from one
        # address would meet the per-address limit (8) that direct gRPC from loopback does not.
        "DEVPYNODE_AI_STREAMS_PER_ADDRESS": "0",
    }
    devpynode = str(Path(sys.executable).parent / "devpynode")
    log = workdir / f"{name}.log"
    process, _ = await start_process([devpynode, "serve"], log, served_env, r"http\s+http://\S+:(\d+)")
    for _ in range(100):
        found = re.search(r"door\s+http://\S+:(\d+)/v1", log.read_text())
        if found:
            return process, grpc_port, http_port, int(found.group(1))
        await asyncio.sleep(0.1)
    raise SystemExit(f"the door did not start; see {log}")


async def _token(channel: grpc.aio.Channel) -> str:
    registered = await auth_pb2_grpc.AuthServiceStub(channel).Register(
        auth_pb2.RegisterRequest(email=f"door-{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD, display_name="B")
    )
    return registered.tokens.access_token


def _pin_apart(pid: int, enabled: bool, pin: Callable[[int, set[int]], None], tree: Callable[[int], list[int]]) -> None:
    """The load generator on the lowest CPU, the server and its Envoy on the rest."""
    cpus = os.sched_getaffinity(0)
    if not enabled or len(cpus) < 2:
        return
    client = {min(cpus)}
    pin(os.getpid(), client)
    for child in tree(pid):
        pin(child, cpus - client)
    print(f"  (load generator pinned to CPU {min(cpus)}, serve and Envoy to the other CPUs)")


async def door_scenario(
    args: argparse.Namespace, workdir: Path, env: dict[str, str], start_process: Any, port: Callable[[], int],
    pin: Callable[[int, set[int]], None], tree: Callable[[int], list[int]],
) -> Outcome:  # fmt: skip
    process, grpc_port, http_port, door_port = await _serve_with_gateway(workdir, env, "door", start_process, port)
    everything = os.sched_getaffinity(0)
    try:
        _pin_apart(process.pid, args.pin, pin, tree)
        c = args.concurrency
        connector = aiohttp.TCPConnector(limit=c * 2)
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as direct,
            aiohttp.ClientSession(connector=connector) as http,
        ):
            token = await _token(direct)
            bearer = [("authorization", f"Bearer {token}")]
            router = ai_pb2_grpc.AIRouterServiceStub(direct)
            through = f"http://127.0.0.1:{http_port}/v1/chat/completions"
            bare_door = f"http://127.0.0.1:{door_port}/v1/chat/completions"
            runs = []
            for paced in (False, True):
                kind = " (paced)" if paced else ""
                grpc_read = bench_ai.grpc_reader(router, bench_ai.generate_request("builtin/echo", paced), bearer)
                runs.append(
                    await _paired(
                        (f"baseline: router gRPC Generate{kind}", grpc_read),
                        (f"door through Envoy (OpenAI SSE){kind}", door_reader(http, through, token, paced)),
                        c,
                        args.seconds,
                        args.rounds,
                        tree(process.pid),
                    )
                )
            direct_run = await _paired(
                ("baseline: router gRPC Generate", bench_ai.grpc_reader(
                    router, bench_ai.generate_request("builtin/echo"), bearer)),
                ("door without Envoy (OpenAI SSE)", door_reader(http, bare_door, token, False)),
                c, args.seconds, args.rounds, tree(process.pid),
            )  # fmt: skip
            # Paced without Envoy too: what of the first-token gap is Envoy's hop (two more process wake-ups).
            direct_paced = await _paired(
                ("baseline: router gRPC Generate (paced)", bench_ai.grpc_reader(
                    router, bench_ai.generate_request("builtin/echo", True), bearer)),
                ("door without Envoy (OpenAI SSE) (paced)", door_reader(http, bare_door, token, True)),
                c, args.seconds, args.rounds, tree(process.pid),
            )  # fmt: skip
        base, door, ratio, full_gap = runs[0]
        paced_base, paced_door, _, gap = runs[1]
        for run in (base, door, paced_base, paced_door, direct_run[1], direct_paced[1]):
            print(run.line())
        errors = sum(r.errors for r in (base, door, paced_base, paced_door))
        ok = ratio >= 0.5 and gap <= 2.0 and errors == 0
        print(
            f"  -> door through Envoy: tokens/s {ratio:.2f}x the router's gRPC at full speed (target >= 0.5x); first "
            f"token {gap:+.2f} ms p50 at {bench_ai.PACE} tokens/s (target <= +2 ms) {verdict(ok)}; at full speed "
            f"{full_gap:+.2f} ms; without Envoy {direct_run[2]:.2f}x and first token {direct_paced[3]:+.2f} ms"
        )
        return Outcome(
            {
                "tokens_per_second_ratio": ratio,
                "first_token_gap_ms": gap,
                "direct_tokens_per_second_ratio": direct_run[2],
                "direct_first_token_gap_ms": direct_paced[3],
                "errors": errors,
            },
            "tokens/s >= 0.5x, first token <= +2 ms",
            ok,
        )
    finally:
        for pid in (os.getpid(),):
            pin(pid, everything)
        process.terminate()
        await process.wait()


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of these processes so far (0 for one that is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def _paired(
    base: tuple[str, Reader],
    routed: tuple[str, Reader],
    concurrency: int,
    seconds: float,
    rounds: int,
    server: list[int] | None = None,
) -> tuple[Streams, Streams, float, float]:
    spent: dict[int, float] = {}  # id of a round's Streams -> the server's CPU seconds in it

    async def measured(label: str, read: Reader) -> Streams:
        before = _cpu_seconds(server or [])
        run = await _reads(label, read, concurrency, seconds / rounds)
        spent[id(run)] = _cpu_seconds(server or []) - before
        return run

    found = await paired_rounds(rounds, lambda: measured(*base), lambda: measured(*routed))
    ratios = found.ratios(lambda b, r: r.tokens_per_second / b.tokens_per_second)
    gaps = found.ratios(lambda b, r: r.ttft_p50() - b.ttft_p50())
    print(
        f"  ({routed[0]}: per-round tokens/s ratios {', '.join(f'{x:.2f}' for x in ratios)}; first-token gaps ms "
        f"{', '.join(f'{x:+.2f}' for x in gaps)})"
    )
    if server:

        def per_thousand(run: Streams) -> float:
            return 1000 * spent[id(run)] / max(1, run.tokens) * 1000  # ms of CPU per 1,000 tokens

        cpu = found.ratios(lambda b, r: per_thousand(b) / per_thousand(r))
        print(
            f"  ({routed[0]}: serve+Envoy CPU ms per 1k tokens, median of rounds: baseline "
            f"{statistics.median(per_thousand(b) for b in found.bases):.1f}, this "
            f"{statistics.median(per_thousand(r) for r in found.runs):.1f}; CPU-bound ratio "
            f"{statistics.median(cpu):.2f}x, rounds {', '.join(f'{x:.2f}' for x in cpu)})"
        )
    return (
        bench_ai.merge(base[0], found.bases),
        bench_ai.merge(routed[0], found.runs),
        statistics.median(ratios),
        statistics.median(gaps),
    )


async def rest_scenario(
    args: argparse.Namespace, workdir: Path, env: dict[str, str], start_process: Any, port: Callable[[], int],
    pin: Callable[[int, set[int]], None], tree: Callable[[int], list[int]], drive: Any,
) -> Outcome:  # fmt: skip
    process, grpc_port, http_port, _ = await _serve_with_gateway(workdir, env, "rest", start_process, port)
    everything = os.sched_getaffinity(0)
    try:
        _pin_apart(process.pid, args.pin, pin, tree)
        c = args.concurrency
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as direct,
            grpc.aio.insecure_channel(f"127.0.0.1:{http_port}") as through,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c * 2)) as http,
        ):
            token = await _token(direct)
            bearer = [("authorization", f"Bearer {token}")]
            headers = {"authorization": f"Bearer {token}"}
            url = f"http://127.0.0.1:{http_port}/v1/users/me"

            def native(channel: grpc.aio.Channel) -> Callable[[], Awaitable[Any]]:
                stub = auth_pb2_grpc.AuthServiceStub(channel)
                return lambda: stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer)

            async def rest() -> None:
                try:
                    async with http.get(url, headers=headers) as response:
                        await response.read()
                        status = response.status
                except aiohttp.ClientError as error:
                    raise _failed(str(error)) from None
                if status != 200:
                    raise _failed(f"HTTP {status}")

            found = await paired_rounds(
                args.rounds,
                lambda: drive("baseline: GetCurrentUser over gRPC", native(direct), c, args.seconds / args.rounds),
                lambda: drive("REST GET /v1/users/me through Envoy", rest, c, args.seconds / args.rounds),
            )
            ratios = found.ratios(lambda b, r: r.rps / b.rps)
            envoy_grpc = await drive("GetCurrentUser over gRPC through Envoy", native(through), c, args.seconds / 2)
        ratio = statistics.median(ratios)
        errors = sum(r.errors for r in found.runs)
        base = statistics.median(b.rps for b in found.bases)
        rest_rps = statistics.median(r.rps for r in found.runs)
        print(f"  baseline: GetCurrentUser over gRPC          {base:9.0f} calls/s (median of {args.rounds} rounds)")
        print(f"  REST GET /v1/users/me through Envoy        {rest_rps:9.0f} calls/s   errors {errors}")
        print(envoy_grpc.line())
        ok = ratio >= 0.7 and errors == 0
        print(
            f"  -> REST through Envoy: {ratio:.2f}x native gRPC (target >= 0.7x; rounds "
            f"{', '.join(f'{x:.2f}' for x in ratios)}) {verdict(ok)}; gRPC through Envoy {envoy_grpc.rps / base:.2f}x"
        )
        return Outcome(
            {"ratio": ratio, "grpc_through_envoy_ratio": envoy_grpc.rps / base, "errors": errors},
            ">= 0.7x native gRPC",
            ok,
        )
    finally:
        pin(os.getpid(), everything)
        process.terminate()
        await process.wait()
