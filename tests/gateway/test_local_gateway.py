"""`devpynode serve` on a laptop: an Envoy child on DEVPYNODE_HTTP_PORT with grpc-web for every service and the
web app's files (CSP, nosniff, no framing, hashed assets cached for ever, index.html never); when Envoy cannot
start, one line says why and gRPC keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from devpynode.auth.v1 import auth_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pynode.app.webfiles import WebFiles, building_marker
from tests.client import PASSWORD
from tests.core.test_tls import make_pki
from tests.gateway.grpcweb import call, decoded


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _web_dir(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(
        '<!doctype html><title>Dev-PyNode</title><script src="/assets/app-3f9a1c2b.js"></script>'
    )
    (root / "assets" / "app-3f9a1c2b.js").write_text("console.log('hello')\n")
    return root


async def _serve(
    tmp_path: Path, http_port: int, extra: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, int, list[str]]:
    grpc_port = _port()
    env = {
        **(extra or {}),
        **os.environ,
        "DEVPYNODE_DATA_DIR": str(tmp_path / "data"),
        "DEVPYNODE_GRPC_PORT": str(grpc_port),
        "DEVPYNODE_METRICS_PORT": "-1",
        "DEVPYNODE_HTTP_PORT": str(http_port),
        "DEVPYNODE_WEB_DIR": str(_web_dir(tmp_path / "web")),
        "DEVPYNODE_BCRYPT_COST": "4",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pynode.app.cli", "serve", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    banner: list[str] = []
    while not any(line.strip().startswith("Ctrl-C") for line in banner):
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line, "serve ended before its banner"
        banner.append(line.decode())
    return process, grpc_port, banner


@pytest.fixture(scope="module")
async def laptop(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, list[str]]]:
    """One `devpynode serve` with its Envoy child for this module's tests (each registers an account of its own):
    a start is a process, every service and an Envoy."""
    port = _port()
    process, _, banner = await _serve(tmp_path_factory.mktemp("laptop"), port)
    try:
        yield f"http://127.0.0.1:{port}", banner
    finally:
        process.terminate()
        await process.wait()


async def test_grpc_web_and_the_web_app_on_one_port(laptop: tuple[str, list[str]]) -> None:
    url, banner = laptop
    assert any("the web app and grpc-web" in line for line in banner), banner
    async with httpx.AsyncClient() as http:
        request = auth_pb2.RegisterRequest(
            email=f"laptop-{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD, display_name="Laptop"
        )
        reply = await call(http, f"{url}/devpynode.auth.v1.AuthService/Register", request)
        assert reply.status == 0, reply.message
        assert decoded(reply, auth_pb2.RegisterResponse)[0].tokens.access_token
        page = await http.get(f"{url}/")
        asset = await http.get(f"{url}/assets/app-3f9a1c2b.js")
        route = await http.get(f"{url}/conversations/123")
        outside = await http.get(f"{url}/%2e%2e/%2e%2e/etc/passwd")
        missing = await http.get(f"{url}/assets/nothing-here.js")
    assert page.status_code == 200 and "<title>Dev-PyNode</title>" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-cache"
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    assert route.status_code == 200 and route.text == page.text  # the app routes in the browser
    assert outside.status_code == 404 and missing.status_code == 404


async def test_a_taken_http_port_is_one_line_and_grpc_keeps_serving(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process, grpc_port, banner = await _serve(tmp_path, port)
        try:
            assert any("not started" in line for line in banner), banner
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            process.terminate()
            _, err = await process.communicate()
    gateway_lines = [line for line in err.decode().splitlines() if "gateway not started" in line]
    assert len(gateway_lines) == 1 and re.search(
        r"DEVPYNODE_HTTP_PORT: cannot listen on 127\.0\.0\.1:\d+", gateway_lines[0]
    )


async def test_with_tls_the_browsers_port_speaks_https_and_reaches_an_mtls_grpc_port(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    port = _port()
    tls = {
        "DEVPYNODE_TLS_CERT_FILE": pki["server_cert"],
        "DEVPYNODE_TLS_KEY_FILE": pki["server_key"],
        "DEVPYNODE_TLS_CA_FILE": pki["ca"],
        "DEVPYNODE_TLS_CLIENT_CA_FILE": pki["ca"],  # the gRPC port wants a client certificate: Envoy shows its own
    }
    process, _, banner = await _serve(tmp_path, port, tls)
    try:
        assert any(f"https://127.0.0.1:{port}  (the web app and grpc-web" in line for line in banner), banner
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=pki["ca"]), http2=False) as http:
            request = auth_pb2.RegisterRequest(
                email=f"tls-{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD, display_name="TLS"
            )
            reply = await call(http, f"https://127.0.0.1:{port}/devpynode.auth.v1.AuthService/Register", request)
            assert reply.status == 0, reply.message
            page = await http.get(f"https://127.0.0.1:{port}/")
            assert page.status_code == 200 and "Dev-PyNode" in page.text
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on that port any more
            async with httpx.AsyncClient() as http:
                await http.get(f"http://127.0.0.1:{port}/")
    finally:
        process.terminate()
        await process.wait()


def test_web_files_never_leave_their_directory(tmp_path: Path) -> None:
    root = _web_dir(tmp_path / "web")
    (tmp_path / "secret.txt").write_text("no")
    files = WebFiles(root)
    assert files.resolve("/../secret.txt") == (None, False)
    assert files.resolve("/%2e%2e/secret.txt") == (None, False)
    assert files.resolve("/assets/app-3f9a1c2b.js") == (root / "assets" / "app-3f9a1c2b.js", True)
    assert files.resolve("/index.html") == (root / "index.html", False)


async def test_web_files_cut_a_client_that_sends_its_headers_a_byte_at_a_time(tmp_path: Path) -> None:
    files = WebFiles(_web_dir(tmp_path / "web"), headers_seconds=0.5)
    port = await files.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: web\r\n")

        async def trickle() -> None:
            while not reader.at_eof():
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.1)

        dripping = asyncio.create_task(trickle())
        try:
            with contextlib.suppress(ConnectionResetError):  # closed while the client was still writing
                assert await asyncio.wait_for(reader.read(), 30) == b""  # cut, not held for ever
        finally:
            dripping.cancel()
            writer.close()
        async with httpx.AsyncClient() as http:  # a real client is served meanwhile and after
            page = await http.get(f"http://127.0.0.1:{port}/")
        assert page.status_code == 200
    finally:
        await files.stop()


async def test_while_scripts_run_builds_the_app_its_pages_say_so_and_then_it_is_served(tmp_path: Path) -> None:
    root = tmp_path / "web" / "dist"
    marker = building_marker(root)
    marker.parent.mkdir(parents=True)
    builder = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
    marker.write_text(f"{builder.pid}\n")
    files = WebFiles(root)
    port = await files.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for path in ("/", "/chat/42"):
                page = await http.get(path)
                assert page.status_code == 503 and "Building the web app" in page.text
                assert (
                    page.headers["retry-after"] == "3"
                    and "script-src 'self'" in page.headers["content-security-policy"]
                )
            assert (await http.get("/assets/app-3f9a1c2b.js")).status_code == 404  # an asset is not a page
            _web_dir(root)  # the build lands
            marker.unlink()
            page = await http.get("/chat/42")
            assert page.status_code == 200 and "<title>Dev-PyNode</title>" in page.text
            root.joinpath("index.html").unlink()  # no build and none coming: not found, as before
            assert (await http.get("/")).status_code == 404
            marker.write_text(f"{builder.pid}\n")
            assert (await http.get("/")).status_code == 503
            builder.kill()
            await builder.wait()  # a builder that died leaves its marker: it says nothing
            assert (await http.get("/")).status_code == 404
    finally:
        if builder.returncode is None:
            builder.kill()
            await builder.wait()
        await files.stop()


async def test_gateway_web_serves_the_app_for_compose_and_helm(tmp_path: Path) -> None:
    port = _port()
    cli = [sys.executable, "-m", "pynode.app.cli", "gateway", "web", "--port", str(port)]
    missing = await asyncio.create_subprocess_exec(
        *cli, "--dir", str(tmp_path / "nothing"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await missing.communicate()
    assert missing.returncode == 2 and err.decode().count("\n") == 1 and "no index.html" in err.decode()
    process = await asyncio.create_subprocess_exec(
        *cli, "--dir", str(_web_dir(tmp_path / "web")), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert f"http://127.0.0.1:{port}" in line.decode()
        async with httpx.AsyncClient() as http:
            page = await http.get(f"http://127.0.0.1:{port}/some/route")
        assert page.status_code == 200 and "<title>Dev-PyNode</title>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
    finally:
        process.terminate()
        assert await process.wait() == 0  # SIGTERM is a clean stop


async def test_per_address_limits_hold_behind_the_gateway_whatever_x_forwarded_for_says(tmp_path: Path) -> None:
    port = _port()
    process, _, _ = await _serve(tmp_path, port, {"DEVPYNODE_RATE_LIMIT_PER_MINUTE": "3"})
    codes = []
    try:
        async with httpx.AsyncClient() as http:
            for attempt in range(5):
                request = auth_pb2.LoginRequest(email=f"nobody-{attempt}@example.com", password=PASSWORD)
                reply = await call(
                    http,
                    f"http://127.0.0.1:{port}/devpynode.auth.v1.AuthService/Login",
                    request,
                    headers={"x-forwarded-for": f"203.0.113.{attempt}"},  # a fresh address each time, if believed
                )
                codes.append(reply.status)
    finally:
        process.terminate()
        await process.wait()
    # UNAUTHENTICATED (16) for the allowed attempts, then RESOURCE_EXHAUSTED (8): the address is Envoy's view.
    assert codes[:3] == [16, 16, 16] and codes[3:] == [8, 8], codes


async def test_a_browser_on_this_machine_is_recorded_as_127_0_0_1(laptop: tuple[str, list[str]]) -> None:
    """Issue 26 #10: Envoy's own x-forwarded-for append gave a loopback browser the host's address (192.0.2.2)."""
    url, _ = laptop
    async with httpx.AsyncClient() as http:
        request = auth_pb2.RegisterRequest(
            email=f"loopback-{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD, display_name="Loopback"
        )
        reply = await call(http, f"{url}/devpynode.auth.v1.AuthService/Register", request)
        assert reply.status == 0, reply.message
        token = decoded(reply, auth_pb2.RegisterResponse)[0].tokens.access_token
        listed = await call(
            http, f"{url}/devpynode.auth.v1.AuthService/ListSessions", auth_pb2.ListSessionsRequest(), token=token
        )
    assert listed.status == 0, listed.message
    sessions = decoded(listed, auth_pb2.ListSessionsResponse)[0].sessions
    assert [s.ip_address for s in sessions] == ["127.0.0.1"]


def _listening_ports(pid: int) -> set[int]:
    """TCP ports process `pid` listens on, from /proc (its sockets' inodes matched against /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def test_nothing_of_the_laptop_gateway_or_the_data_is_open_to_other_local_users(tmp_path: Path) -> None:
    # An outside attack (issue 27 follow-up) read the gateway secret and live tokens through Envoy's admin port on
    # loopback, stopped Envoy for good with /quitquitquit, and read the database and uploads (mode 0644).
    http_port = _port()
    process, _, _ = await _serve(tmp_path, http_port)
    try:
        data = tmp_path / "data"
        envoys = [
            int(pid)
            for pid in os.listdir("/proc")
            if pid.isdigit() and _parent_of(int(pid)) == process.pid and "envoy" in _command_of(int(pid))
        ]
        assert len(envoys) == 1
        assert _listening_ports(envoys[0]) == {http_port}  # the admin interface is on no TCP port
        admin = next(Path(arg) for arg in _config_of(data).split() if arg.endswith("admin.sock"))
        assert admin.is_socket() and admin.stat().st_mode & 0o777 == 0o600
        assert admin.parent.stat().st_mode & 0o777 == 0o700
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(admin))) as http:
            assert (await http.get("http://envoy-admin/ready")).status_code == 200  # the owner still reaches it
        assert data.stat().st_mode & 0o777 == 0o700
        for path in data.rglob("*"):
            if path.is_file():
                assert path.stat().st_mode & 0o077 == 0, f"{path} is open to others"
    finally:
        process.terminate()
        await process.wait()
    assert not admin.exists()


def _parent_of(pid: int) -> int:
    with contextlib.suppress(OSError):
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return 0


def _command_of(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


def _config_of(data: Path) -> str:
    return (data / "gateway" / "envoy.yaml").read_text().replace('"', " ").replace("'", " ")
