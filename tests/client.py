"""A test client of the mesh: stubs, a per-client address, and helpers to read rich errors."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from pynode.core import client_streams

# The suite's asyncio clients keep the status a server sent when it ends a client-streaming call early
# (grpcio's client overwrites it with INTERNAL now and then: see pynode.core.client_streams).
client_streams.keep_delivered_status()
_addresses = itertools.count(1)

PASSWORD = "correct horse battery staple"


def new_address() -> str:
    n = next(_addresses)
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


@dataclass
class RichError:
    """A failed call's status and its decoded google.rpc details."""

    code: grpc.StatusCode
    message: str
    details: list[Any]

    def detail(self, kind: type) -> Any:
        found = [d for d in self.details if isinstance(d, kind)]
        assert found, f"no {kind.__name__} in {self.details}"
        return found[0]

    @property
    def reason(self) -> str:
        return str(self.detail(error_details_pb2.ErrorInfo).reason)

    def violations(self) -> dict[str, str]:
        return {v.field: v.reason for v in self.detail(error_details_pb2.BadRequest).field_violations}


_DETAIL_TYPES = [
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.QuotaFailure,
    error_details_pb2.RetryInfo,
]


def rich_error(error: grpc.aio.AioRpcError) -> RichError:
    details: list[Any] = []
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for packed in status.details:
                details.extend(_unpack(packed))
    return RichError(error.code(), error.details() or "", details)


def _unpack(packed: any_pb2.Any) -> list[Any]:
    for kind in _DETAIL_TYPES:
        if packed.Is(kind.DESCRIPTOR):
            message = kind()
            packed.Unpack(message)
            return [message]
    return []


async def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait for something another task (the feed's reader) makes true."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def fails(call: Any) -> RichError:
    """Await a call that must fail; returns its rich error."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return rich_error(error)
    raise AssertionError("call succeeded but was expected to fail")


class MeshClient:
    """Stubs plus the metadata a real client sends."""

    def __init__(self, channel: grpc.aio.Channel, address: str | None = None) -> None:
        self.channel = channel
        self.address = address or new_address()
        self.auth = auth_pb2_grpc.AuthServiceStub(channel)
        self.admin = auth_pb2_grpc.UserAdminServiceStub(channel)
        self.token = ""

    def md(self, token: str | None = None, **extra: str) -> list[tuple[str, str]]:
        """Metadata: our address, and a bearer token when we have one."""
        items = [("x-forwarded-for", self.address), *extra.items()]
        bearer = self.token if token is None else token
        if bearer:
            items.append(("authorization", f"Bearer {bearer}"))
        return items

    def as_other_address(self) -> MeshClient:
        return MeshClient(self.channel)

    async def register(self, email: str | None = None, password: str = PASSWORD) -> auth_pb2.RegisterResponse:
        response: auth_pb2.RegisterResponse = await self.auth.Register(
            auth_pb2.RegisterRequest(email=email or new_email(), password=password, display_name="Test User"),
            metadata=self.md(""),
        )
        self.token = response.tokens.access_token
        return response

    async def login(self, email: str, password: str = PASSWORD) -> auth_pb2.LoginResponse:
        response: auth_pb2.LoginResponse = await self.auth.Login(
            auth_pb2.LoginRequest(email=email, password=password), metadata=self.md("")
        )
        self.token = response.tokens.access_token
        return response

    async def me(self, token: str | None = None) -> auth_pb2.User:
        response = await self.auth.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=self.md(token))
        return response.user


DEVPYNODE = [sys.executable, "-m", "pynode.app.cli"]


async def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes = b"", seconds: float = 60
) -> tuple[int, str, str]:
    """Run `devpynode ARGS` (fast bcrypt); returns (exit status, stdout, stderr). Never leaves a process behind."""
    process = await asyncio.create_subprocess_exec(
        *DEVPYNODE,
        *args,
        env={**os.environ, "DEVPYNODE_BCRYPT_COST": "4", **(env or {})},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), seconds)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _run_here(args: tuple[str, ...], env: dict[str, str], stdin: bytes) -> tuple[int, str, str]:
    import contextlib
    import io
    import logging

    from pynode.app.cli import main

    saved_env, saved_stdin = dict(os.environ), sys.stdin
    root = logging.getLogger()
    saved_logging = (root.handlers[:], root.level)
    out, err = io.StringIO(), io.StringIO()
    os.environ.update(env)
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        sys.stdin = saved_stdin
        os.environ.clear()
        os.environ.update(saved_env)
        root.handlers[:], _ = saved_logging  # `serve` sends logs to stderr: give the test process its own back
        root.setLevel(saved_logging[1])
    return code, out.getvalue(), err.getvalue()


async def run_cli_here(*args: str, env: dict[str, str] | None = None, stdin: bytes = b"") -> tuple[int, str, str]:
    """`run_cli` in this process (no interpreter to start), for commands that stop before serving: the
    environment, stdin, stdout and stderr are the command's while it runs, then this process's again."""
    return await asyncio.to_thread(_run_here, args, {"DEVPYNODE_BCRYPT_COST": "4", **(env or {})}, stdin)
