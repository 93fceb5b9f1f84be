"""The account commands' work, without Typer or Rich: signing in, the kept tokens, whoami, token, health.

Both ways into the CLI run these: `quick` (a plain command line, parsed here in microseconds) and the Typer
commands in `account` (help, and anything `quick` does not take). Output is plain `print`: one line each,
which scripts read.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc

from pynode.app.cli import credentials
from pynode.app.cli.common import CliError, fail, open_channel, read_password, rpc_error
from pynode.app.cli.credentials import Credentials

TIMEOUT_SECONDS = 15.0


@contextmanager
def channel(server: str) -> Iterator[grpc.Channel]:
    """A channel to `server`; a failed call inside becomes one line (`rpc_error`)."""
    opened = open_channel(server)
    try:
        yield opened
    except grpc.RpcError as error:
        raise rpc_error(error, server) from None
    finally:
        opened.close()


def _seconds(stamp: Any) -> float:
    return float(stamp.seconds + stamp.nanos / 1e9)


def kept(server: str, email: str, tokens: auth_pb2.TokenPair) -> Credentials:
    """What is kept of a token pair."""
    return Credentials(
        server,
        email,
        tokens.access_token,
        _seconds(tokens.access_token_expires_at),
        tokens.refresh_token,
        _seconds(tokens.refresh_token_expires_at),
    )


def fresh_credentials(server: str) -> Credentials:
    """The kept tokens for `server`, the access token refreshed (and the new pair kept) when it is about to expire."""
    found = credentials.load(server)
    if found is None:
        fail(f"not signed in to {server}; run `devpynode login --email you@example.com`")
    if found.access_fresh():
        return found
    if found.refresh_expires_at <= time.time():
        credentials.forget(server)
        fail(f"the session on {server} has expired; run `devpynode login` again")
    with open_channel(server) as opened:
        try:
            response = auth_pb2_grpc.AuthServiceStub(opened).RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token=found.refresh_token), timeout=TIMEOUT_SECONDS
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                credentials.forget(server)
                said = (error.details() or "").rstrip(". ")
                fail(f"the session on {server} has ended ({said}); run `devpynode login` again")
            raise rpc_error(error, server) from None
    renewed = kept(server, found.email, response.tokens)
    credentials.save(renewed)
    return renewed


API_KEY_VARIABLE = "DEVPYNODE_API_KEY"


def bearer(server: str) -> tuple[tuple[str, str | bytes], ...]:
    """Call metadata with a personal API key from DEVPYNODE_API_KEY when set (scripts, CI), else a fresh
    access token from the kept sign-in."""
    key = os.environ.get(API_KEY_VARIABLE, "").strip()
    if key:
        return (("authorization", f"Bearer {key}"),)
    return (("authorization", f"Bearer {fresh_credentials(server).access_token}"),)


def role_name(role: auth_pb2.Role.ValueType) -> str:
    return auth_pb2.Role.Name(role).removeprefix("ROLE_").lower()


def login(address: str, email: str, password_stdin: bool) -> None:
    password = read_password(password_stdin, confirm=False)
    with channel(address) as opened:
        response = auth_pb2_grpc.AuthServiceStub(opened).Login(
            auth_pb2.LoginRequest(email=email, password=password), timeout=TIMEOUT_SECONDS
        )
    path = credentials.save(kept(address, response.user.email, response.tokens))
    print(f"signed in to {address} as {response.user.email} (tokens kept in {path})")


def logout(address: str, all_sessions: bool) -> None:
    if credentials.load(address) is None:
        print(f"not signed in to {address}")
        return
    try:
        with channel(address) as opened:
            auth_pb2_grpc.AuthServiceStub(opened).Logout(
                auth_pb2.LogoutRequest(all_sessions=all_sessions), metadata=bearer(address), timeout=TIMEOUT_SECONDS
            )
    except CliError as error:
        credentials.forget(address)
        fail(f"tokens forgotten here, but the server did not confirm the logout: {error}")
    credentials.forget(address)
    print(f"signed out of {address}")


def whoami(address: str) -> None:
    with channel(address) as opened:
        response = auth_pb2_grpc.AuthServiceStub(opened).GetCurrentUser(
            auth_pb2.GetCurrentUserRequest(), metadata=bearer(address), timeout=TIMEOUT_SECONDS
        )
    user = response.user
    print(f"{user.email} ({user.display_name}), role {role_name(user.role)}, id {user.id}, on {address}")


def token(address: str) -> None:
    # With DEVPYNODE_API_KEY set, the key is what every other command sends, so it is what `$(devpynode token)` gets.
    key = os.environ.get(API_KEY_VARIABLE, "").strip()
    print(key or fresh_credentials(address).access_token)


# `--service chat` for `--service devpynode.chat.v1.ChatService` (the names health reports are full service names).
_SHORT_SERVICE_NAMES = {
    "auth": "devpynode.auth.v1.AuthService",
    "ai": "devpynode.ai.v1.AIRouterService",
    "chat": "devpynode.chat.v1.ChatService",
    "files": "devpynode.files.v1.FileService",
}


def health(address: str, service: str) -> int:
    """Prints the status; 0 when SERVING, else 1."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    service = _SHORT_SERVICE_NAMES.get(service, service)
    with channel(address) as opened:
        try:
            response = health_pb2_grpc.HealthStub(opened).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5
            )
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            fail(
                f"{address} serves no service named {service!r}: give a full name such as "
                f"devpynode.chat.v1.ChatService, or one of {', '.join(_SHORT_SERVICE_NAMES)}"
            )
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(f"{service or address}: {status}")
    sys.stdout.flush()
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1
