"""Commands that talk to a running server over gRPC: login, logout, whoami, token, health, users."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import grpc
import typer
from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.table import Table

from pynode.app.cli import credentials
from pynode.app.cli.common import CliError, fail, open_channel, read_password, rpc_error, server_address
from pynode.app.cli.credentials import Credentials

TIMEOUT_SECONDS = 15.0
console = Console(soft_wrap=True)  # a line per message, whatever the width: scripts read these


def print_table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """A table on a terminal; tab-separated lines, a header first and never wrapped, for pipes and scripts."""
    if console.is_terminal:
        table = Table(*headers)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    for line in (headers, *rows):
        print("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in line))


Server = Annotated[
    str | None, typer.Option("--server", help="host:port of the mesh [env DEVPYNODE_SERVER; 127.0.0.1:50051]")
]


@contextmanager
def _channel(server: str) -> Iterator[grpc.Channel]:
    channel = open_channel(server)
    try:
        yield channel
    except grpc.RpcError as error:
        raise rpc_error(error, server) from None
    finally:
        channel.close()


def _seconds(stamp: Any) -> float:
    return float(stamp.seconds + stamp.nanos / 1e9)


def _kept(server: str, email: str, tokens: auth_pb2.TokenPair) -> Credentials:
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
    kept = credentials.load(server)
    if kept is None:
        fail(f"not signed in to {server}; run `devpynode login --email you@example.com`")
    if kept.access_fresh():
        return kept
    if kept.refresh_expires_at <= time.time():
        credentials.forget(server)
        fail(f"the session on {server} has expired; run `devpynode login` again")
    with open_channel(server) as channel:
        try:
            response = auth_pb2_grpc.AuthServiceStub(channel).RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token=kept.refresh_token), timeout=TIMEOUT_SECONDS
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                credentials.forget(server)
                fail(f"the session on {server} has ended ({error.details()}); run `devpynode login` again")
            raise rpc_error(error, server) from None
    renewed = _kept(server, kept.email, response.tokens)
    credentials.save(renewed)
    return renewed


def _bearer(server: str) -> tuple[tuple[str, str | bytes], ...]:
    return (("authorization", f"Bearer {fresh_credentials(server).access_token}"),)


def login(
    email: Annotated[str, typer.Option(help="Your account's e-mail address")],
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin instead of prompting")] = False,
    server: Server = None,
) -> None:
    """Sign in; the tokens are kept in your config directory (mode 0600) and refreshed when they expire."""
    address = server_address(server)
    password = read_password(password_stdin, confirm=False)
    with _channel(address) as channel:
        response = auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(email=email, password=password), timeout=TIMEOUT_SECONDS
        )
    path = credentials.save(_kept(address, response.user.email, response.tokens))
    console.print(f"signed in to {address} as {response.user.email} (tokens kept in {path})")


def logout(
    all_sessions: Annotated[bool, typer.Option("--all", help="End every session of this account")] = False,
    server: Server = None,
) -> None:
    """End this session on the server and forget its tokens here."""
    address = server_address(server)
    kept = credentials.load(address)
    if kept is None:
        console.print(f"not signed in to {address}")
        return
    try:
        with _channel(address) as channel:
            auth_pb2_grpc.AuthServiceStub(channel).Logout(
                auth_pb2.LogoutRequest(all_sessions=all_sessions), metadata=_bearer(address), timeout=TIMEOUT_SECONDS
            )
    except CliError as error:
        credentials.forget(address)
        fail(f"tokens forgotten here, but the server did not confirm the logout: {error}")
    credentials.forget(address)
    console.print(f"signed out of {address}")


def whoami(server: Server = None) -> None:
    """Show the signed-in account."""
    address = server_address(server)
    with _channel(address) as channel:
        response = auth_pb2_grpc.AuthServiceStub(channel).GetCurrentUser(
            auth_pb2.GetCurrentUserRequest(), metadata=_bearer(address), timeout=TIMEOUT_SECONDS
        )
    user = response.user
    console.print(f"{user.email} ({user.display_name}), role {_role(user.role)}, id {user.id}, on {address}")


def token(server: Server = None) -> None:
    """Print a fresh access token (for grpcurl: -H "authorization: Bearer $(devpynode token)")."""
    print(fresh_credentials(server_address(server)).access_token)


def health(
    service: Annotated[str, typer.Option(help="A service's full name; empty asks about the whole process")] = "",
    server: Server = None,
) -> None:
    """Exit 0 when the server (or one service) is SERVING, 1 otherwise: for probes and scripts."""
    address = server_address(server)
    with _channel(address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    console.print(f"{service or address}: {status}")
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        raise typer.Exit(1)


users = typer.Typer(help="Accounts: list, create, set-role, disable (admins), create-admin (on the server machine).")


def _role(role: auth_pb2.Role.ValueType) -> str:
    return auth_pb2.Role.Name(role).removeprefix("ROLE_").lower()


def _all_users(channel: grpc.Channel, address: str) -> Iterator[auth_pb2.User]:
    """Every account, page by page (admins only)."""
    stub = auth_pb2_grpc.UserAdminServiceStub(channel)
    page = ""
    while True:
        response = stub.ListUsers(
            auth_pb2.ListUsersRequest(page_size=100, page_token=page),
            metadata=_bearer(address),
            timeout=TIMEOUT_SECONDS,
        )
        yield from response.users
        page = response.next_page_token
        if not page:
            return


@users.command("list")
def list_users(server: Server = None) -> None:
    """List every account (admins only)."""
    address = server_address(server)
    with _channel(address) as channel:
        rows = [
            (user.id, user.email, user.display_name, _role(user.role), "yes" if user.disabled else "")
            for user in _all_users(channel, address)
        ]
    print_table(("id", "email", "name", "role", "disabled"), rows)


@users.command("create")
def create_user(
    email: Annotated[str, typer.Option(help="The new account's e-mail address")],
    display_name: Annotated[str, typer.Option(help="Name shown for the account")] = "",
    admin: Annotated[bool, typer.Option("--admin", help="Make it an administrator (needs your admin role)")] = False,
    password_stdin: Annotated[bool, typer.Option(help="Read its password from stdin instead of prompting")] = False,
    server: Server = None,
) -> None:
    """Create an account (through Register; --admin then promotes it with your admin token)."""
    address = server_address(server)
    bearer = _bearer(address) if admin else ()  # signed in as an admin before anything is created
    password = read_password(password_stdin, confirm=True, prompt="Password for the new account")
    with _channel(address) as channel:
        created = auth_pb2_grpc.AuthServiceStub(channel).Register(
            auth_pb2.RegisterRequest(email=email, password=password, display_name=display_name or email.split("@")[0]),
            timeout=TIMEOUT_SECONDS,
        )
        if admin:
            auth_pb2_grpc.UserAdminServiceStub(channel).UpdateUser(
                auth_pb2.UpdateUserRequest(user_id=created.user.id, role=auth_pb2.ROLE_ADMIN),
                metadata=bearer,
                timeout=TIMEOUT_SECONDS,
            )
    console.print(f"created {created.user.email} ({created.user.id}){' as admin' if admin else ''}")


def _update(server: str | None, user: str, **changes: Any) -> auth_pb2.User:
    address = server_address(server)
    with _channel(address) as channel:
        user_id = user if "@" not in user else _find(channel, address, user)
        response = auth_pb2_grpc.UserAdminServiceStub(channel).UpdateUser(
            auth_pb2.UpdateUserRequest(user_id=user_id, **changes), metadata=_bearer(address), timeout=TIMEOUT_SECONDS
        )
    return response.user


def _find(channel: grpc.Channel, address: str, email: str) -> str:
    wanted = email.strip().lower()
    for user in _all_users(channel, address):
        if user.email == wanted:
            return str(user.id)
    fail(f"no account {email}")


@users.command("set-role")
def set_role(
    user: Annotated[str, typer.Argument(help="The account: its e-mail address or id")],
    role: Annotated[str, typer.Argument(help="user or admin")],
    server: Server = None,
) -> None:
    """Change an account's role (admins only); live sessions get it at once."""
    roles = {"user": auth_pb2.ROLE_USER, "admin": auth_pb2.ROLE_ADMIN}
    if role not in roles:
        fail(f"ROLE: {role!r} is not a role; use user or admin", 2)
    updated = _update(server, user, role=roles[role])
    console.print(f"{updated.email} is now {_role(updated.role)}")


@users.command("disable")
def disable(
    user: Annotated[str, typer.Argument(help="The account: its e-mail address or id")],
    enable: Annotated[bool, typer.Option("--enable", help="Enable it again instead")] = False,
    server: Server = None,
) -> None:
    """Disable an account (admins only): its sessions end at once. --enable undoes it."""
    updated = _update(server, user, disabled=not enable)
    console.print(f"{updated.email} is {'disabled' if updated.disabled else 'enabled'}")


@users.command("audit")
def audit(
    user: Annotated[str, typer.Option("--user", help="Only events of this account (e-mail address or id)")] = "",
    kind: Annotated[str, typer.Option("--kind", help="Only events of this kind, e.g. login.failed")] = "",
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most this many events")] = 50,
    server: Server = None,
) -> None:
    """Show the audit trail of security events, newest first (admins only)."""
    address = server_address(server)
    rows: list[tuple[str, ...]] = []
    with _channel(address) as channel:
        user_id = user if "@" not in user else _find(channel, address, user)
        stub = auth_pb2_grpc.UserAdminServiceStub(channel)
        page, shown = "", 0
        while shown < limit:
            response = stub.ListAuditEvents(
                auth_pb2.ListAuditEventsRequest(
                    page_size=min(100, limit - shown), page_token=page, user_id=user_id, kind=kind
                ),
                metadata=_bearer(address),
                timeout=TIMEOUT_SECONDS,
            )
            for event in response.events:
                details = " ".join(f"{k}={v}" for k, v in sorted(event.details.items()))
                when = event.time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
                rows.append(
                    (when, event.kind, event.actor, event.user_id, event.client_address, details, event.request_id)
                )
                shown += 1
            page = response.next_page_token
            if not page:
                break
    print_table(("time", "kind", "actor", "user", "address", "details", "request id"), rows)
