"""The laptop gateway (`devpynode serve` with its Envoy child) under attack (issue 27): stalled requests do not
lock out real clients, mesh-only RPCs are not reachable from browsers, and x-forwarded-for is believed from the
gateway only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
import yaml
from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc

from pynode.app.gateway import browser_methods, compose_options, render
from pynode.core.settings import DEV_SERVICE_SECRET
from pynode.door.settings import DoorSettings
from tests.client import PASSWORD
from tests.gateway.grpcweb import CONTENT_TYPE, call, decoded
from tests.gateway.test_local_gateway import _port, _serve

STALLED = 1_100  # over Envoy's default of 1,024 requests per cluster


@dataclass
class Laptop:
    url: str
    port: int
    grpc_port: int


@pytest.fixture(scope="module")
async def laptop(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Laptop]:
    """One `devpynode serve` with its Envoy child for this module (only the direct caller signs in, so its
    three logins a minute are its own)."""
    port = _port()
    extra = {"DEVPYNODE_RATE_LIMIT_PER_MINUTE": "3"}
    process, grpc_port, _ = await _serve(tmp_path_factory.mktemp("laptop"), port, extra)
    try:
        yield Laptop(f"http://127.0.0.1:{port}", port, grpc_port)
    finally:
        process.terminate()
        await process.wait()


async def _stall(port: int) -> asyncio.StreamWriter:
    """A grpc-web POST whose headers promise a body that never comes."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /devpynode.auth.v1.AuthService/GetJwks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"content-type: {CONTENT_TYPE}\r\nx-grpc-web: 1\r\ncontent-length: 1000\r\n\r\n".encode()
    )
    await writer.drain()
    return writer


async def test_stalled_requests_do_not_lock_out_a_real_client(laptop: Laptop) -> None:
    """Issue 27 #2: headers-only requests filled the auth cluster's 1,024 requests; everyone got 503 overflow."""
    stalled = [await _stall(laptop.port) for _ in range(STALLED)]
    try:
        async with httpx.AsyncClient() as http:
            await asyncio.sleep(0)  # the flood is on the wire; Envoy has seen it by the time our call arrives
            reply = await call(
                http, f"{laptop.url}/devpynode.auth.v1.AuthService/GetJwks", auth_pb2.GetJwksRequest(), seconds=30
            )
        assert reply.status == 0, (reply.status, reply.message, reply.headers)
        assert decoded(reply, auth_pb2.GetJwksResponse)[0].keys
    finally:
        for writer in stalled:
            writer.close()


async def test_mesh_only_rpcs_are_not_routed_to_browsers(laptop: Laptop) -> None:
    """Issue 27 #14: IssueServiceToken with the dev secret minted service tokens for anyone on the port."""
    async with httpx.AsyncClient() as http:
        minted = await call(
            http,
            f"{laptop.url}/devpynode.auth.v1.AuthService/IssueServiceToken",
            auth_pb2.IssueServiceTokenRequest(service_name="chat", service_secret=DEV_SERVICE_SECRET),
        )
        lookup = await http.post(
            f"{laptop.url}/devpynode.auth.v1.AuthService/LookupUser",
            content=b"\x00\x00\x00\x00\x00",
            headers={"content-type": CONTENT_TYPE, "x-grpc-web": "1"},
        )
    assert minted.status is None and not minted.messages, minted
    assert lookup.status_code == 404 and "grpc-status" not in lookup.headers


def test_the_generated_routes_leave_out_mesh_only_and_client_streaming_rpcs() -> None:
    routed = {c.full_method for c in browser_methods()}
    config = render(compose_options())
    for hidden in (
        "/devpynode.auth.v1.AuthService/IssueServiceToken",
        "/devpynode.auth.v1.AuthService/LookupUser",
        "/devpynode.files.v1.FileService/ReadFileForUser",
        "/devpynode.ai.v1.AIRouterService/GenerateForUser",
        "/devpynode.files.v1.FileService/UploadFile",  # client streaming: no browser can send it
    ):
        assert hidden not in routed and hidden not in config, hidden
    assert "/devpynode.auth.v1.AuthService/Login" in routed and "/devpynode.ai.v1.AIRouterService/Generate" in routed


async def test_a_direct_caller_cannot_claim_an_address(laptop: Laptop) -> None:
    """Issue 27 #8: a loopback caller dialling the gRPC port directly was believed about x-forwarded-for."""
    codes = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{laptop.grpc_port}") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        for attempt in range(5):
            try:
                await stub.Login(
                    auth_pb2.LoginRequest(email=f"nobody-{uuid.uuid4().hex[:6]}@example.com", password=PASSWORD),
                    metadata=[
                        ("x-forwarded-for", f"198.51.100.{attempt}"),  # a fresh address each time, if believed
                        ("x-devpynode-gateway", "a guess"),
                    ],
                    timeout=30,
                )
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())
    unauthenticated, exhausted = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED
    assert codes == [unauthenticated] * 3 + [exhausted] * 2, codes


async def _stall_door(port: int) -> asyncio.StreamWriter:
    """A chat completion whose body never arrives whole, sent to the gateway's OpenAI-compatible path."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nauthorization: Bearer k\r\n"
        b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n{"
    )
    await writer.drain()
    return writer


async def test_stalled_door_bodies_stay_in_envoy_and_a_real_client_is_served(laptop: Laptop) -> None:
    """Unbuffered door routes passed each stalled body on to the door, one HTTP/1.1 connection each: over the
    cluster's 1,000 connections, everyone's OpenAI calls waited behind them (issue 27 follow-up)."""
    stalled = [await _stall_door(laptop.port) for _ in range(STALLED)]
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            await asyncio.sleep(0)
            reply = await http.get(f"{laptop.url}/v1/models", headers={"authorization": "Bearer not.a.token"})
        assert reply.status_code == 401 and reply.json()["error"]["message"], reply.text  # the door's own answer
    finally:
        for writer in stalled:
            writer.close()


def test_envoys_own_answers_on_door_paths_are_in_openais_shape_and_idle_door_connections_close_first() -> None:
    config = yaml.safe_load(render(compose_options()))
    manager = config["staticResources"]["listeners"][0]["filterChains"][0]["filters"][0]["typedConfig"]
    first = manager["localReplyConfig"]["mappers"][0]
    assert "request_timeout" in first["bodyFormatOverride"]["textFormatSource"]["inlineString"]
    door = next(c for c in config["staticResources"]["clusters"] if c["name"] == "door")
    options = door["typedExtensionProtocolOptions"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    idle = float(options["commonHttpProtocolOptions"]["idleTimeout"].rstrip("s"))
    assert idle < DoorSettings().door_headers_seconds  # Envoy drops an idle connection before the door would
