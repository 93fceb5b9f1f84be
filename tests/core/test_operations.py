"""Operating the mesh: settings errors, migrations, metrics, graceful and signalled shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.backends import Backend
from tests.client import PASSWORD, MeshClient, eventually, new_email, run_cli, run_cli_here
from tests.conftest import make_settings, start_mesh

DEVPYNODE = [sys.executable, "-m", "pynode.app.cli"]


_cli = run_cli


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"DEVPYNODE_REDIS_URL": "memcached://x"}, "DEVPYNODE_REDIS_URL"),
        ({"DEVPYNODE_DATABASE_URL": "mysql://root@localhost/x"}, "DEVPYNODE_DATABASE_URL"),
        ({"DEVPYNODE_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/x"}, "DEVPYNODE_DATABASE_URL"),
        ({"DEVPYNODE_REDIS_URL": "redis://127.0.0.1:1/0"}, "DEVPYNODE_REDIS_URL"),
        ({"DEVPYNODE_STORAGE_URL": "ftp://files"}, "DEVPYNODE_STORAGE_URL"),
        ({"DEVPYNODE_GRPC_PORT": "not-a-port"}, "DEVPYNODE_GRPC_PORT"),
        ({"DEVPYNODE_ONLY": "auth,billing"}, "DEVPYNODE_ONLY"),
        ({"DEVPYNODE_DEV_MODE": "false"}, "DEVPYNODE_SERVICE_SECRET"),
        ({"DEVPYNODE_DEV_MODE": "false", "DEVPYNODE_SERVICE_SECRET": "abc"}, "DEVPYNODE_SERVICE_SECRET"),
        (
            {"DEVPYNODE_DEV_MODE": "false", "DEVPYNODE_SERVICE_SECRET": "s3cr3t-long-enough-" + "x" * 20},
            "DEVPYNODE_AUTH_PRIVATE_KEYS",
        ),
        ({"DEVPYNODE_ONLY": "files", "DEVPYNODE_AUTH_ADDRESS": "no-port-here"}, "DEVPYNODE_AUTH_ADDRESS"),
        ({"DEVPYNODE_ONLY": "files"}, "DEVPYNODE_AUTH_ADDRESS"),
        ({"DEVPYNODE_LOG_LEVEL": "chatty"}, "DEVPYNODE_LOG_LEVEL"),
        ({"DEVPYNODE_CLAMD_ADDRESS": "clamd"}, "DEVPYNODE_CLAMD_ADDRESS"),
    ],
)
async def test_bad_settings_stop_serve_with_one_line(tmp_path: Path, env: dict[str, str], setting: str) -> None:
    """In this process (the command's own code path, without an interpreter start per case); the test
    below checks the same one line from a real `devpynode` process."""
    defaults = {"DEVPYNODE_GRPC_PORT": "0", "DEVPYNODE_METRICS_PORT": "-1", "DEVPYNODE_HTTP_PORT": "-1"}
    code, _, err = await run_cli_here("serve", "--data-dir", str(tmp_path), env={**defaults, **env})
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"devpynode: {setting}"), err
    assert "Traceback" not in err


async def test_a_bad_setting_stops_the_serve_process_with_one_line(tmp_path: Path) -> None:
    env = {"DEVPYNODE_GRPC_PORT": "0", "DEVPYNODE_METRICS_PORT": "-1", "DEVPYNODE_STORAGE_URL": "ftp://files"}
    code, _, err = await _cli("serve", "--data-dir", str(tmp_path), env=env)  # found while building, logs set up
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("devpynode: DEVPYNODE_STORAGE_URL"), err
    assert "Traceback" not in err


async def test_busy_ports_stop_serve_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for env, setting in (
            ({"DEVPYNODE_GRPC_PORT": "0", "DEVPYNODE_METRICS_PORT": port}, "DEVPYNODE_METRICS_PORT"),
            ({"DEVPYNODE_GRPC_PORT": port, "DEVPYNODE_METRICS_PORT": "-1"}, "DEVPYNODE_GRPC_PORT"),
        ):
            code, _, err = await run_cli_here("serve", "--data-dir", str(tmp_path), env=env)
            assert (
                code == 2 and err.startswith(f"devpynode: {setting}: cannot listen") and len(err.splitlines()) == 1
            ), err


async def test_unmigrated_postgres_is_refused_then_migrate_fixes_it(real_backend: Backend, tmp_path: Path) -> None:
    """PostgreSQL only: SQLite migrates itself on serve."""
    import psycopg

    from tests.backends import PG_ADMIN_URL, unique

    name = unique("devpynode_mig_")
    plain = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {"DEVPYNODE_DATABASE_URL": f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}", "DEVPYNODE_METRICS_PORT": "-1"}
        code, _, err = await run_cli_here("serve", "--data-dir", str(tmp_path), "--grpc-port", "0", env=env)
        assert code == 2 and "devpynode migrate" in err
        code, _, err = await run_cli_here("migrate", env=env)
        assert code == 0, err
        code, _, err = await run_cli_here("migrate", env=env)  # idempotent
        assert code == 0, err
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_metrics_endpoint_counts_calls_by_code(backend: Backend, tmp_path: Path) -> None:
    server = await start_mesh(make_settings(backend, tmp_path, metrics_port=0))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            client = MeshClient(channel)
            await client.register()
            await client.me()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.me(token="garbage")
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        await eventually(lambda: server.platform.authenticator.sessions.remembering)
        url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        body = (await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())).decode()
    finally:
        await server.stop(0)
    labels = 'grpc_method="GetCurrentUser",grpc_service="devpynode.auth.v1.AuthService",grpc_type="unary"'
    assert f"grpc_server_started_total{{{labels}}} 2.0" in body
    assert f'grpc_server_handled_total{{grpc_code="OK",{labels}}} 1.0' in body
    assert f'grpc_server_handled_total{{grpc_code="UNAUTHENTICATED",{labels}}} 1.0' in body
    assert f"grpc_server_handling_seconds_count{{{labels}}} 2.0" in body
    assert f'grpc_server_handling_seconds_bucket{{{labels},le="+Inf"}} 2.0' in body
    assert f"grpc_server_msg_received_total{{{labels}}} 1.0" in body  # the garbage token never got that far
    assert f"grpc_server_msg_sent_total{{{labels}}} 1.0" in body
    assert "devpynode_session_memory_live 1.0" in body
    # Health and reflection calls are counted like every other RPC.
    assert 'grpc_method="Check",grpc_service="grpc.health.v1.Health"' in body


async def test_graceful_stop_drains_in_flight_calls(tmp_path: Path) -> None:
    embedded = Backend("embedded", "", "memory://", "t:")
    # No drain window (tests/chat/test_shutdown.py has one): the listener closes as soon as stop begins.
    server = await start_mesh(make_settings(embedded, tmp_path, bcrypt_cost=13, shutdown_drain_seconds=0))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    client = MeshClient(channel)
    health = health_pb2_grpc.HealthStub(channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service="devpynode.auth.v1.AuthService"))
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    # bcrypt at cost 13 takes well over the moment we wait: the call is in flight when stop begins.
    slow = asyncio.ensure_future(
        client.auth.Register(
            auth_pb2.RegisterRequest(email=new_email(), password=PASSWORD, display_name="Slow"), metadata=client.md("")
        )
    )
    await asyncio.sleep(0.1)
    stopping = asyncio.ensure_future(server.stop(60))  # bcrypt 13 on a busy machine: seconds, the grace ample
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
    await asyncio.sleep(0.05)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest(), timeout=2)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    response = await slow
    assert response.user.display_name == "Slow"
    await stopping
    await channel.close()


async def test_serve_stops_on_sigterm_without_waiting_for_watch_streams(tmp_path: Path) -> None:
    """A load balancer's Health/Watch stream ends at NOT_SERVING instead of holding the stop for the grace period."""
    process = await asyncio.create_subprocess_exec(
        *DEVPYNODE,
        "serve",
        "--data-dir",
        str(tmp_path),
        "--grpc-port",
        "0",
        "--metrics-port",
        "-1",
        env={**os.environ, "DEVPYNODE_SHUTDOWN_GRACE_SECONDS": "600"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    port = 0
    banner = ""
    while not port:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert line, "serve exited before serving"
        banner += line
        found = re.search(r"gRPC\s+127\.0\.0\.1:(\d+)", line)
        port = int(found.group(1)) if found else 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        response = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signal.SIGTERM)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        # With a 600 s grace, only an ended Watch stream lets the process exit within this wait.
        assert await asyncio.wait_for(process.wait(), 30) == 0
    err = (await process.stderr.read()).decode()
    assert "stopping; 1 call(s) in flight" in err
    assert (tmp_path / "devpynode.db").exists()
    assert "metrics    off" in banner + (await process.stdout.read()).decode()
