"""The one-process mesh: every service mounted, health per service, reflection, errors, metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest import mock

import grpc
import pytest
from devpynode.ai.v1 import ai_pb2, ai_pb2_grpc
from devpynode.auth.v1 import auth_pb2_grpc
from devpynode.chat.v1 import chat_pb2, chat_pb2_grpc
from devpynode.files.v1 import files_pb2, files_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pynode.app.server import MeshServer
from tests.client import MeshClient, fails, rich_error
from tests.conftest import auth_of

SERVICES = [
    "devpynode.auth.v1.AuthService",
    "devpynode.auth.v1.UserAdminService",
    "devpynode.auth.v1.ApiKeyService",
    "devpynode.ai.v1.AIRouterService",
    "devpynode.ai.v1.ModelAdminService",
    "devpynode.chat.v1.ChatService",
    "devpynode.files.v1.FileService",
]


@pytest.mark.parametrize("service", [*SERVICES, ""])
async def test_health_reports_each_service_serving(client: MeshClient, service: str) -> None:
    stub = health_pb2_grpc.HealthStub(client.channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_of_unknown_service_is_not_found(client: MeshClient) -> None:
    stub = health_pb2_grpc.HealthStub(client.channel)
    error = await fails(stub.Check(health_pb2.HealthCheckRequest(service="nope.v1.Nope")))
    assert error.code == grpc.StatusCode.NOT_FOUND


async def _grpcurl(grpcurl: str, port: int, *args: str, flags: tuple[str, ...] = ()) -> str:
    # Async subprocess: the server under test runs on this very event loop.
    process = await asyncio.create_subprocess_exec(
        grpcurl,
        "-plaintext",
        *flags,
        f"127.0.0.1:{port}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_grpcurl_lists_every_service(mesh: MeshServer, grpcurl: str) -> None:
    listed = set((await _grpcurl(grpcurl, mesh.port, "list")).split())
    assert set(SERVICES) | {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= listed


async def test_grpcurl_describe_shows_documented_messages(mesh: MeshServer, grpcurl: str) -> None:
    described = await _grpcurl(grpcurl, mesh.port, "describe", "devpynode.auth.v1.RegisterRequest")
    assert "string email = 1" in described
    assert "E-mail address; case and surrounding spaces are ignored." in described
    service = await _grpcurl(grpcurl, mesh.port, "describe", "devpynode.chat.v1.ChatService")
    assert "rpc SendMessage" in service and "stream .devpynode.chat.v1.SendMessageResponse" in service


async def test_grpcurl_health_check_answers_serving(mesh: MeshServer, grpcurl: str) -> None:
    out = await _grpcurl(
        grpcurl, mesh.port, "grpc.health.v1.Health/Check", flags=("-d", '{"service": "devpynode.files.v1.FileService"}')
    )
    assert json.loads(out) == {"status": "SERVING"}


async def test_chat_authenticates_before_it_looks(client: MeshClient) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(client.channel)
    request = chat_pb2.GetConversationRequest(conversation_id="6f1c1bc4-8a0e-4c38-9a52-2f1a1b1b1b1b")
    anonymous = await fails(stub.GetConversation(request, metadata=client.md("")))
    assert anonymous.code == grpc.StatusCode.UNAUTHENTICATED
    await client.register()
    error = await fails(stub.GetConversation(request, metadata=client.md()))
    assert error.code == grpc.StatusCode.NOT_FOUND and error.reason == "CONVERSATION_NOT_FOUND"


async def test_a_streaming_rpc_fails_with_rich_details_before_its_first_message(client: MeshClient) -> None:
    await client.register()
    stub = chat_pb2_grpc.ChatServiceStub(client.channel)
    call = stub.StreamEvents(
        chat_pb2.StreamEventsRequest(conversation_id="6f1c1bc4-8a0e-4c38-9a52-2f1a1b1b1b1b"), metadata=client.md()
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call:
            pass
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert rich_error(raised.value).reason == "CONVERSATION_NOT_FOUND"


async def test_request_id_is_echoed_on_errors(client: MeshClient) -> None:
    stub = ai_pb2_grpc.AIRouterServiceStub(client.channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListModels(ai_pb2.ListModelsRequest(), metadata=client.md("", **{"x-request-id": "req-42"}))
    assert ("x-request-id", "req-42") in tuple(raised.value.trailing_metadata() or ())


async def test_oversized_message_is_refused(client: MeshClient) -> None:
    await client.register()
    stub = files_pb2_grpc.FileServiceStub(client.channel)
    huge = files_pb2.UploadPartRequest(session_id="x", data=b"\0" * (3 * 1024 * 1024))
    error = await fails(stub.UploadPart(huge, metadata=client.md()))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_unexpected_errors_are_internal_without_internals(
    client: MeshClient, mesh: MeshServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await client.register()

    async def broken(caller: object) -> None:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(auth_of(mesh).service, "current_user", broken)
    with caplog.at_level("ERROR", logger="pynode.edge"):
        error = await fails(client.me())
    assert error.code == grpc.StatusCode.INTERNAL and error.reason == "INTERNAL"
    assert "hunter2" not in error.message and "RuntimeError" not in error.message
    logged = [r for r in caplog.records if r.name == "pynode.edge"]
    assert logged and logged[0].exc_info is not None and "hunter2" in str(logged[0].exc_info[1])


async def test_client_streaming_rpc_goes_through_the_edge(client: MeshClient) -> None:
    stub = files_pb2_grpc.FileServiceStub(client.channel)

    def upload() -> list[files_pb2.UploadFileRequest]:
        meta = files_pb2.FileMetadata(filename="a.txt", content_type="text/plain", size_bytes=12)
        return [files_pb2.UploadFileRequest(metadata=meta), files_pb2.UploadFileRequest(chunk=b"hello world\n")]

    anonymous = await fails(stub.UploadFile(iter(upload()), metadata=client.md("")))
    assert anonymous.code == grpc.StatusCode.UNAUTHENTICATED
    await client.register()
    stored = await stub.UploadFile(iter(upload()), metadata=client.md())
    assert stored.file.size_bytes == 12 and stored.file.content_type == "text/plain"


class _RecordingServer:
    """Stands in for a grpc.aio server: what the edge registers on it."""

    def __init__(self) -> None:
        self.generic: list[Any] = []
        self.registered: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        self.registered.append(service)


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def test_the_edge_routes_every_method_through_one_generic_handler(mesh: MeshServer) -> None:
    """Issue 25: grpc.aio keeps a pending request per registered method and waits on all of them for every call
    it accepts (a tenth of a cheap call's CPU with our ~80 methods): the edge registers none."""
    server = _RecordingServer()
    mesh.edge.mount(server, auth_pb2_grpc.add_AuthServiceServicer_to_server, mock.Mock())  # type: ignore[arg-type]
    mesh.edge.mount(server, health_pb2_grpc.add_HealthServicer_to_server, mock.Mock(), open_to_all=True)  # type: ignore[arg-type]
    assert server.registered == [] and len(server.generic) == 1
    (routes,) = server.generic
    for method in ("/devpynode.auth.v1.AuthService/GetCurrentUser", "/grpc.health.v1.Health/Check"):
        assert routes.service(_Details(method)) is not None
    assert routes.service(_Details("/devpynode.auth.v1.AuthService/NoSuchMethod")) is None
