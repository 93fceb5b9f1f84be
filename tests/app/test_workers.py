"""`devpynode serve --workers 2`: two processes on one port, supervised (restart, SIGTERM, giving up)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pynode.app import migrate
from tests.backends import Backend, unique
from tests.client import run_cli


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(p) for p in (task / "children").read_text().split()}
    return found


def _alive(pids: set[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


async def _checks(port: int, connections: int) -> None:
    """Health checks over many connections (a subchannel pool each): the kernel spreads them over workers."""
    for _ in range(connections):
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def _served_checks(metrics_port: int) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("grpc_server_handled_total") and 'grpc_method="Check"' in line
    )


async def test_two_workers_share_a_port_and_are_supervised(real_backend: Backend, tmp_path: Path) -> None:
    await migrate.upgrade_async(real_backend.database_url)
    port, metrics = _port(), _port()
    env = {
        **os.environ,
        "DEVPYNODE_DATA_DIR": str(tmp_path),
        "DEVPYNODE_GRPC_PORT": str(port),
        "DEVPYNODE_METRICS_PORT": str(metrics),
        "DEVPYNODE_DATABASE_URL": real_backend.database_url,
        "DEVPYNODE_REDIS_URL": real_backend.redis_url,
        "DEVPYNODE_REDIS_PREFIX": unique("workers-") + ":",
        "DEVPYNODE_SHUTDOWN_GRACE_SECONDS": "1",
    }
    # Output to a file, not a pipe: a pipe the test reads only at the end fills with the workers' logs, and a
    # worker blocked writing its log cannot drain at SIGTERM (the whole run then hung, workers orphaned).
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        parent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pynode.app.cli", "serve", "--workers", "2", env=env, stdout=out, stderr=out
        )
    workers: set[int] = set()
    try:
        for _ in range(300):
            if len(_children(parent.pid)) == 2:
                try:
                    await _checks(port, 1)
                    await _served_checks(metrics)
                    await _served_checks(metrics + 1)
                    break
                except (grpc.aio.AioRpcError, httpx.HTTPError):
                    pass
            await asyncio.sleep(0.1)
        first = workers = _children(parent.pid)
        assert len(first) == 2
        await _checks(port, 40)
        # Both workers answered some of the calls.
        assert await _served_checks(metrics) > 0 and await _served_checks(metrics + 1) > 0
        # A worker killed is replaced; the port keeps answering meanwhile.
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        for _ in range(300):
            now = _children(parent.pid)
            if len(now) == 2 and victim not in now:
                break
            await asyncio.sleep(0.1)
        assert victim not in _children(parent.pid) and len(_children(parent.pid)) == 2
        await _checks(port, 5)
        # SIGTERM: every worker drains and the parent exits cleanly, leaving none behind.
        workers = _children(parent.pid)
        parent.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(parent.wait(), 30)
        assert code == 0
        assert not _alive(workers)
        assert b"restarting" in log.read_bytes()
    finally:
        if parent.returncode is None:
            for pid in {*workers, *_children(parent.pid)}:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            parent.kill()
            await parent.wait()


async def test_workers_that_keep_dying_stop_the_parent(tmp_path: Path) -> None:
    env = {
        "DEVPYNODE_DATA_DIR": str(tmp_path),
        "DEVPYNODE_GRPC_PORT": str(_port()),
        "DEVPYNODE_METRICS_PORT": "-1",
        # Nothing listens there: every worker fails at start.
        "DEVPYNODE_DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{_port()}/none",
        "DEVPYNODE_REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    # Six starts that fail, three per worker: on a busy machine each can take tens of seconds.
    code, _, err = await run_cli("serve", "--workers", "2", env=env, seconds=300)
    assert code == 1 and "workers keep dying" in err


async def test_more_than_one_worker_needs_redis(tmp_path: Path) -> None:
    code, _, err = await run_cli("serve", "--workers", "2", env={"DEVPYNODE_DATA_DIR": str(tmp_path)})
    assert code == 2 and "needs a shared Redis" in err
    code, _, err = await run_cli("serve", "--workers", "many", env={"DEVPYNODE_DATA_DIR": str(tmp_path)})
    assert code == 2 and "--workers" in err
