"""One service calling another through its peer client: identity, request id, deadline, cancellation and
error statuses behave the same whether the callee runs in this process or in another one.

Chat's real AttachmentReader adapter (GrpcAttachments) calls a stand-in files service that records what it
saw; both are mounted as service modules, so the calls cross the real edge on both sides.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from devpynode.chat.v1 import chat_pb2, chat_pb2_grpc
from devpynode.files.v1 import files_pb2, files_pb2_grpc

from pynode.ai.module import MODULE as AI
from pynode.app import modules
from pynode.app.server import MeshServer
from pynode.auth.module import MODULE as AUTH
from pynode.chat.adapters.grpc_attachments import GrpcAttachments
from pynode.chat.module import MODULE as CHAT
from pynode.chat.settings import ChatSettings
from pynode.core import peers as peers_module
from pynode.core.errors import NotFound
from pynode.core.module import Infrastructure, Registration, ServiceParts
from pynode.core.peers import ServiceTokens
from pynode.core.principal import current_principal
from pynode.files.module import MODULE as FILES
from pynode.files.settings import FilesSettings
from tests.backends import Backend
from tests.client import MeshClient, eventually, fails
from tests.conftest import make_settings, start_mesh

SLOW = str(uuid.UUID(int=1))
MISSING = str(uuid.UUID(int=2))
AS_SERVICE = str(uuid.UUID(int=3))

_FILES = files_pb2.DESCRIPTOR.services_by_name["FileService"]
_CHAT = chat_pb2.DESCRIPTOR.services_by_name["ChatService"]


class RecordingFiles(files_pb2_grpc.FileServiceServicer):
    """GetFile that notes who called, with which request id and how much time it was given."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.cancelled = asyncio.Event()

    async def GetFile(
        self, request: files_pb2.GetFileRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> files_pb2.GetFileResponse:
        who = current_principal()
        metadata = dict(context.invocation_metadata() or ())
        self.seen.append(
            {"subject": who.subject, "role": who.role, "request_id": metadata.get("x-request-id"),
             "remaining": context.time_remaining()}
        )  # fmt: skip
        if request.file_id == SLOW:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if request.file_id == MISSING:
            raise NotFound("no such file of yours", reason="FILE_NOT_FOUND")
        return files_pb2.GetFileResponse(file=files_pb2.File(id=request.file_id, filename=f"of-{who.subject}"))


class AttachingChat(chat_pb2_grpc.ChatServiceServicer):
    """GetConversation reads the file named by the id through chat's peer adapter (as the user);
    DeleteConversation does the same with this process's service token."""

    def __init__(self, attachments: GrpcAttachments) -> None:
        self.attachments = attachments

    async def GetConversation(
        self, request: chat_pb2.GetConversationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> chat_pb2.GetConversationResponse:
        found = await self.attachments.attachment(request.conversation_id)
        return chat_pb2.GetConversationResponse(
            conversation=chat_pb2.Conversation(id=found.file_id, title=found.filename)
        )

    async def DeleteConversation(
        self, request: chat_pb2.DeleteConversationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> chat_pb2.DeleteConversationResponse:
        stub = files_pb2_grpc.FileServiceStub(self.attachments.channel)
        options = await self.attachments.options(as_user=False)
        await self.attachments.unary(stub.GetFile(files_pb2.GetFileRequest(file_id=AS_SERVICE), **options))
        return chat_pb2.DeleteConversationResponse()


class StandInFiles:
    # The real module's migrations stay: the real-backend database is shared with other tests.
    name, settings_class, service_names, migrations = "files", FilesSettings, (_FILES.full_name,), FILES.migrations

    def __init__(self) -> None:
        self.servicer = RecordingFiles()

    def load_tables(self) -> None:
        FILES.load_tables()

    async def build(self, settings: Any, infra: Infrastructure) -> ServiceParts:
        return ServiceParts([Registration(_FILES, files_pb2_grpc.add_FileServiceServicer_to_server, self.servicer)])


class StandInChat:
    # The real module's migrations stay: the real-backend database is shared with other tests.
    name, settings_class, service_names, migrations = "chat", ChatSettings, (_CHAT.full_name,), CHAT.migrations

    def load_tables(self) -> None:
        CHAT.load_tables()

    async def build(self, settings: Any, infra: Infrastructure) -> ServiceParts:
        servicer = AttachingChat(GrpcAttachments(infra.peers))
        return ServiceParts([Registration(_CHAT, chat_pb2_grpc.add_ChatServiceServicer_to_server, servicer)])


@pytest.fixture(params=["co-located", "remote"])
async def mesh_pair(
    request: pytest.FixtureRequest, backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[MeshServer, RecordingFiles]]:
    """Chat's process and the stand-in files service: one process, or two (which needs a shared Redis)."""
    files = StandInFiles()
    # The real AI module stays for its migrations: the real-backend database is shared with other tests.
    monkeypatch.setattr(modules, "MODULES", (AUTH, AI, files, StandInChat()))
    if request.param == "co-located":
        server = await start_mesh(make_settings(backend, tmp_path, only="auth,files,chat"))
        yield server, files.servicer
        await server.stop(0)
        return
    if backend.name != "real":
        pytest.skip("a split mesh shares sessions through Redis")
    shared = {"redis_prefix": "peers-" + uuid.uuid4().hex[:8] + ":"}
    callee = await start_mesh(make_settings(backend, tmp_path / "a", only="auth,files", **shared))
    address = f"127.0.0.1:{callee.port}"
    caller = await start_mesh(
        make_settings(backend, tmp_path / "b", only="chat", auth_address=address, files_address=address, **shared)
    )
    yield caller, files.servicer
    await caller.stop(0)
    await callee.stop(0)


async def _signed_in(server: MeshServer) -> tuple[MeshClient, str]:
    auth_port = server.platform.infra.peers.address("auth").rpartition(":")[2]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{auth_port}")
    user = MeshClient(channel)
    registered = await user.register()
    return user, registered.user.id


async def test_the_callee_acts_as_the_user_with_the_same_request_id(
    mesh_pair: tuple[MeshServer, RecordingFiles],
) -> None:
    server, files = mesh_pair
    user, user_id = await _signed_in(server)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        chat = chat_pb2_grpc.ChatServiceStub(channel)
        file_id = str(uuid.uuid4())
        response = await chat.GetConversation(
            chat_pb2.GetConversationRequest(conversation_id=file_id),
            metadata=user.md(**{"x-request-id": "trace-me-1"}),
            timeout=20,
        )
    assert response.conversation.title == f"of-{user_id}"  # files saw the end user, not a service
    seen = files.seen[-1]
    assert seen["role"] == "user" and seen["request_id"] == "trace-me-1"
    assert seen["remaining"] is not None and seen["remaining"] < 5.5  # GetFile's own budget, inside the caller's 20 s
    await user.channel.close()


async def test_a_callee_error_reaches_the_caller_with_its_status_and_reason(
    mesh_pair: tuple[MeshServer, RecordingFiles],
) -> None:
    server, _ = mesh_pair
    user, _ = await _signed_in(server)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        chat = chat_pb2_grpc.ChatServiceStub(channel)
        missing = await fails(
            chat.GetConversation(chat_pb2.GetConversationRequest(conversation_id=MISSING), metadata=user.md())
        )
        assert missing.code == grpc.StatusCode.NOT_FOUND and missing.reason == "FILE_NOT_FOUND"
        # A service token is a service identity: the callee's user-only RPC refuses it.
        as_service = await fails(
            chat.DeleteConversation(chat_pb2.DeleteConversationRequest(conversation_id=AS_SERVICE), metadata=user.md())
        )
        assert as_service.code == grpc.StatusCode.PERMISSION_DENIED and as_service.reason == "ROLE_REQUIRED"
    await user.channel.close()


async def test_the_callers_deadline_bounds_the_call_and_cancelling_reaches_the_callee(
    mesh_pair: tuple[MeshServer, RecordingFiles],
) -> None:
    server, files = mesh_pair
    user, _ = await _signed_in(server)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        chat = chat_pb2_grpc.ChatServiceStub(channel)
        late = await fails(
            chat.GetConversation(chat_pb2.GetConversationRequest(conversation_id=SLOW), metadata=user.md(), timeout=1.0)
        )
        assert late.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert files.seen[-1]["remaining"] < 1.0  # the outbound call got less than the caller had
        await asyncio.wait_for(files.cancelled.wait(), 10)  # and the callee's work was stopped
        files.cancelled.clear()
        before = len(files.seen)
        call = chat.GetConversation(chat_pb2.GetConversationRequest(conversation_id=SLOW), metadata=user.md())
        await eventually(lambda: len(files.seen) > before)  # the slow GetFile runs in the callee
        call.cancel()
        await asyncio.wait_for(files.cancelled.wait(), 10)
    await user.channel.close()


async def test_service_tokens_are_renewed_before_they_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    issued: list[float] = []
    now = [1000.0]
    monkeypatch.setattr(peers_module.time, "time", lambda: now[0])

    async def fetch(channel: Any, seconds: float) -> tuple[str, float]:
        issued.append(now[0])
        return f"token-{len(issued)}", now[0] + 300

    tokens = ServiceTokens(fetch)
    assert await tokens.token(None) == "token-1"  # type: ignore[arg-type]
    now[0] += 200
    assert await tokens.token(None) == "token-1"  # type: ignore[arg-type]
    now[0] += 50  # 50 s left of 300: inside the renewal margin
    assert await tokens.token(None) == "token-2"  # type: ignore[arg-type]
    assert len(issued) == 2
