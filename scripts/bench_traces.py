"""Scenario `traces`: what tracing costs a cheap authenticated call (GetCurrentUser at the bench's concurrency).

Three `devpynode serve` processes run side by side: tracing off (no OTEL_* variable), on with every call sampled
(`OTEL_TRACES_SAMPLER=always_on`), and configured but sampled out (`always_off`); the two traced ones export
over OTLP/gRPC to a real collector (rotel-agent, blackhole exporter, so the collector's own work is not the
figure). Rounds alternate between the three; each ratio is the median of the rounds' ratios to the untraced
server, for throughput and for calls per server CPU-second (what tracing costs the server, steadier than
throughput when other work shares the machine's two cores; the verdict uses it). Targets (issue "traces"):
sampled >= 0.85x, sampled out >= 0.97x.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from bench_report import Outcome, verdict
from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc

MODES = {
    "off": {},
    "sampled": {"OTEL_TRACES_SAMPLER": "always_on"},
    "sampled out": {"OTEL_TRACES_SAMPLER": "always_off"},
}
Drive = Callable[[str, Callable[[], Awaitable[Any]], int, float], Awaitable[Any]]
Start = Callable[..., Awaitable[tuple[Any, int]]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _collector(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    import rotel  # type: ignore[import-untyped]

    port = _free_port()
    log = (workdir / "rotel.log").open("wb")
    agent = Path(rotel.__file__).parent / "rotel-agent"
    process = subprocess.Popen(
        [str(agent), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{port}", "--otlp-http-endpoint",
         f"127.0.0.1:{_free_port()}", "--exporter", "blackhole"],
        stdout=log, stderr=log,
    )  # fmt: skip
    return process, port


def _caller(stub: Any, bearer: Any) -> Callable[[], Awaitable[Any]]:
    def me() -> Awaitable[Any]:
        call: Awaitable[Any] = stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer)
        return call

    return me


async def traces_scenario(
    args: argparse.Namespace,
    workdir: Path,
    env: dict[str, str],
    start_process: Start,
    drive: Drive,
    cpu_seconds: Callable[[int], float],
) -> Outcome:
    collector, port = _collector(workdir)
    processes: list[Any] = []
    channels: list[grpc.aio.Channel] = []
    calls: dict[str, Callable[[], Awaitable[Any]]] = {}
    devpynode = str(Path(sys.executable).parent / "devpynode")
    try:
        for mode, extra in MODES.items():
            name = mode.replace(" ", "-")
            mode_env = {**env, "DEVPYNODE_DATA_DIR": str(workdir / f"data-traces-{name}"), **extra}
            if mode != "off":
                mode_env |= {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                }
            process, grpc_port = await start_process(
                [devpynode, "serve"], workdir / f"traces-{name}.log", mode_env, r"gRPC\s+127\.0\.0\.1:(\d+)"
            )
            processes.append(process)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
            channels.append(channel)
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            registered = await stub.Register(
                auth_pb2.RegisterRequest(
                    email=f"t-{uuid.uuid4().hex[:8]}@example.com", password="bench-password-1", display_name="Bench"
                )
            )
            bearer = [("authorization", f"Bearer {registered.tokens.access_token}")]

            calls[mode] = _caller(stub, bearer)
            await drive("warm-up", calls[mode], args.concurrency, 1)
        rounds: dict[str, list[float]] = {mode: [] for mode in MODES}
        per_cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
        pids = dict(zip(MODES, (p.pid for p in processes), strict=True))
        for _ in range(args.rounds):
            for mode, me in calls.items():
                before = cpu_seconds(pids[mode])
                run = await drive(f"GetCurrentUser, tracing {mode}", me, args.concurrency, args.seconds / args.rounds)
                rounds[mode].append(run.rps)
                per_cpu[mode].append(run.calls / max(1e-9, cpu_seconds(pids[mode]) - before))
    finally:
        for channel in channels:
            await channel.close()
        for process in processes:
            process.terminate()
            await process.wait()
        collector.terminate()
        collector.wait(10)
    med = statistics.median
    for mode, found in rounds.items():
        print(
            f"  GetCurrentUser, tracing {mode:<11} {med(found):8.1f} req/s, {med(per_cpu[mode]):8.0f} calls per "
            f"server CPU-second (medians of {len(found)} rounds)"
        )

    def ratio(figures: dict[str, list[float]], mode: str) -> float:
        return med(on / off for on, off in zip(figures[mode], figures["off"], strict=True))

    sampled, unsampled = ratio(per_cpu, "sampled"), ratio(per_cpu, "sampled out")
    ok = sampled >= 0.85 and unsampled >= 0.97
    print(
        f"  -> per server CPU-second: traced and sampled {sampled:.2f}x untraced (target >= 0.85x); configured but "
        f"sampled out {unsampled:.2f}x (target >= 0.97x) {verdict(ok)}; throughput {ratio(rounds, 'sampled'):.2f}x "
        f"and {ratio(rounds, 'sampled out'):.2f}x"
    )
    return Outcome(
        {
            "sampled_cpu_ratio": sampled,
            "sampled_out_cpu_ratio": unsampled,
            "sampled_throughput_ratio": ratio(rounds, "sampled"),
            "sampled_out_throughput_ratio": ratio(rounds, "sampled out"),
        },
        "per CPU: sampled >= 0.85x, out >= 0.97x",
        ok,
    )
