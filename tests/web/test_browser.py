"""The web app in Chromium, end to end through `devpynode serve` and its Envoy child (web/e2e/app.spec.ts).

Embedded backends over plain HTTP/1.1; PostgreSQL, Redis and S3 with TLS on both of Envoy's sides (HTTP/2 to
the browser, mTLS to the gRPC port). Needs Node.js, web/node_modules and Debian's Chromium: scripts/test and
.ci/run install them; elsewhere the test is skipped with the reason, unless DEVPYNODE_TEST_REAL=require.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.backends import MODE, Backend, unique
from tests.core.test_tls import make_pki

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ADMIN_PASSWORD = "correct horse battery"


def _missing() -> str:
    if shutil.which("node") is None:
        return "Node.js is not installed"
    if not (WEB / "node_modules" / ".bin" / "playwright").exists():
        return "web/node_modules is missing (cd web && npm ci)"
    if not (WEB / "dist" / "index.html").is_file():
        return "the web app is not built (cd web && npm run build)"
    if not Path(CHROMIUM).exists():
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return ""


def admin_email(backend: Backend) -> str:
    """The run's administrator (the real backends' database is shared with other tests)."""
    return f"admin-{backend.redis_prefix.strip(':')}@example.com"


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _backend_env(backend: Backend) -> dict[str, str]:
    env = {"DEVPYNODE_REDIS_URL": backend.redis_url, "DEVPYNODE_REDIS_PREFIX": backend.redis_prefix + unique("web")}
    if backend.database_url:
        env["DEVPYNODE_DATABASE_URL"] = backend.database_url
    if backend.s3_endpoint:
        env.update(
            DEVPYNODE_STORAGE_URL=f"s3://{unique('devpynode-web-')}",
            DEVPYNODE_S3_ENDPOINT_URL=backend.s3_endpoint,
            DEVPYNODE_S3_ACCESS_KEY="devpynode-test",
            DEVPYNODE_S3_SECRET_KEY="devpynode-test-secret",
        )
    return env


@pytest.fixture
async def platform(backend: Backend, tmp_path: Path) -> AsyncIterator[str]:
    """`devpynode serve` with the built app: its browsers' URL (https on the real backends)."""
    async with serve_platform(backend, tmp_path) as url:
        yield url


def skip_without_browser() -> None:
    missing = _missing()
    if missing:
        if MODE == "require":
            pytest.fail(f"browser tests required: {missing}")
        pytest.skip(missing)


@contextlib.asynccontextmanager
async def serve_platform(
    backend: Backend, tmp_path: Path, extra: dict[str, str] | None = None, http_port: int = 0
) -> AsyncIterator[str]:
    """`devpynode serve` with the built app and `extra` settings on `http_port` (0: a free one)."""
    skip_without_browser()
    tls = backend.name == "real"
    http_port = http_port or _port()
    env = {
        **os.environ,
        **_backend_env(backend),
        "DEVPYNODE_DATA_DIR": str(tmp_path / "data"),
        "DEVPYNODE_GRPC_PORT": str(_port()),
        "DEVPYNODE_METRICS_PORT": "-1",
        "DEVPYNODE_HTTP_PORT": str(http_port),
        "DEVPYNODE_WEB_DIR": str(WEB / "dist"),
        "DEVPYNODE_BCRYPT_COST": "4",
        "DEVPYNODE_AI_BUILTIN_TOKENS_PER_SECOND": "30",
        **(extra or {}),
    }
    if tls:
        pki = make_pki(tmp_path)
        env.update(
            DEVPYNODE_TLS_CERT_FILE=pki["server_cert"],
            DEVPYNODE_TLS_KEY_FILE=pki["server_key"],
            DEVPYNODE_TLS_CA_FILE=pki["ca"],
            DEVPYNODE_TLS_CLIENT_CA_FILE=pki["ca"],
        )
    cli = [sys.executable, "-m", "pynode.app.cli"]
    migrate = await asyncio.create_subprocess_exec(*cli, "migrate", env=env, stdout=asyncio.subprocess.PIPE)
    assert await migrate.wait() == 0
    admin = await asyncio.create_subprocess_exec(
        *cli, "users", "create-admin", "--email", admin_email(backend), "--password-stdin",
        env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    said, _ = await admin.communicate(ADMIN_PASSWORD.encode() + b"\n")
    assert admin.returncode == 0, said.decode()
    log = (tmp_path / "serve.log").open("wb")
    process = await asyncio.create_subprocess_exec(*cli, "serve", env=env, stdout=asyncio.subprocess.PIPE, stderr=log)
    assert process.stdout is not None
    banner = b""
    try:
        while b"Ctrl-C" not in banner:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, f"serve ended before its banner: {(tmp_path / 'serve.log').read_text()[-2000:]}"
            banner += line
        scheme = "https" if tls else "http"
        assert f"{scheme}://127.0.0.1:{http_port}  (the web app and grpc-web" in banner.decode(), banner.decode()
        yield f"{scheme}://127.0.0.1:{http_port}"
    finally:
        process.terminate()
        await process.wait()
        log.close()


# Screens whose behaviour does not depend on the backend set, run once, on the real set (TLS, HTTP/2, PostgreSQL,
# Redis, S3: the production path): the API reference is the contract rendered (no call behind it), and an admin's
# disabling is the auth service's, tested on both sets in tests/auth. Each costs 20-30 s of a browser run.
ONCE = ("the API reference", "an admin disables a user")
SCREENS_SKIPPED_ON_EMBEDDED = 3  # 09-admin, 10-signed-out, 11-api-docs


async def test_web_app_end_to_end(platform: str, backend: Backend) -> None:
    out = ROOT / "web" / "e2e" / "out" / backend.name
    shutil.rmtree(out, ignore_errors=True)
    env = {
        **os.environ,
        "DEVPYNODE_WEB_URL": platform,
        "DEVPYNODE_E2E_OUT": str(out),
        "DEVPYNODE_E2E_ADMIN_EMAIL": admin_email(backend),
        "DEVPYNODE_E2E_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "CHROMIUM_PATH": CHROMIUM,
    }
    only = [] if backend.name == "real" else ["--grep-invert", "|".join(ONCE)]
    run = await asyncio.create_subprocess_exec(
        str(WEB / "node_modules" / ".bin" / "playwright"), "test", *only,
        cwd=WEB, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(run.communicate(), 600)
    text = output.decode(errors="replace")
    assert run.returncode == 0, f"Playwright failed (screens and traces in {out}):\n{text[-12000:]}"
    screens = sorted(p.name for p in (out / "screens").glob("*.png"))
    assert len(screens) >= 11 - (SCREENS_SKIPPED_ON_EMBEDDED if only else 0), screens
