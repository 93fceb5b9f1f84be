"""One process per service: a files-only process verifies tokens from a separate auth process."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from devpynode.files.v1 import files_pb2, files_pb2_grpc

from tests.backends import Backend
from tests.client import MeshClient, eventually, fails
from tests.conftest import make_settings, start_mesh


async def test_split_processes_share_auth_through_settings(real_backend: Backend, tmp_path: Path) -> None:
    """Needs a shared Redis: session liveness lives there (the embedded memory store is per process)."""
    shared = {"redis_prefix": "split-" + real_backend.redis_prefix}
    auth = await start_mesh(make_settings(real_backend, tmp_path / "auth", only="auth", **shared))
    files = await start_mesh(
        make_settings(real_backend, tmp_path / "files", only="files", auth_address=f"127.0.0.1:{auth.port}", **shared)
    )
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{auth.port}") as auth_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{files.port}") as files_channel,
        ):
            user = MeshClient(auth_channel)
            registered = await user.register()
            sid = registered.tokens.refresh_token.partition(".")[0]
            stub = files_pb2_grpc.FileServiceStub(files_channel)
            anonymous = await fails(stub.ListFiles(files_pb2.ListFilesRequest(), metadata=user.md("")))
            assert anonymous.code == grpc.StatusCode.UNAUTHENTICATED
            # The token passes the files process's checks (keys fetched from auth's JWKS)...
            await eventually(lambda: files.platform.authenticator.sessions.remembering)
            accepted = await stub.ListFiles(files_pb2.ListFilesRequest(), metadata=user.md())
            assert list(accepted.files) == []
            assert files.platform.authenticator.sessions.holder_known(sid) is not None  # remembered there
            # ...and a logout in the auth process takes effect there at once.
            from devpynode.auth.v1 import auth_pb2

            await user.auth.Logout(auth_pb2.LogoutRequest(), metadata=user.md())
            revoked = await fails(stub.ListFiles(files_pb2.ListFilesRequest(), metadata=user.md()))
            assert revoked.code == grpc.StatusCode.UNAUTHENTICATED and revoked.reason == "SESSION_REVOKED"
    finally:
        await files.stop(0)
        await auth.stop(0)


async def test_a_process_without_auth_needs_its_address(tmp_path: Path) -> None:
    from pynode.app.bootstrap import build
    from pynode.core.settings import SettingsError

    embedded = Backend("embedded", "", "memory://", "t:")
    with pytest.raises(SettingsError, match="DEVPYNODE_AUTH_ADDRESS"):
        await build(make_settings(embedded, tmp_path, only="files"))


async def test_a_service_this_process_does_not_run_says_so(tmp_path: Path) -> None:
    embedded = Backend("embedded", "", "memory://", "t:")
    server = await start_mesh(make_settings(embedded, tmp_path, only="auth"))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = files_pb2_grpc.FileServiceStub(channel)
            error = await fails(stub.ListFiles(files_pb2.ListFilesRequest()))
            assert error.code == grpc.StatusCode.UNIMPLEMENTED and error.reason == "SERVICE_NOT_IN_THIS_PROCESS"
            assert "devpynode.files.v1.FileService is not run by this process (it runs auth)" in error.message
            streaming = stub.DownloadFile(files_pb2.DownloadFileRequest(file_id="x"))
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async for _ in streaming:
                    pass
            assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(0)
