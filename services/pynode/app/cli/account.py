"""Commands that talk to a running server over gRPC: login, logout, whoami, token, health, users.

The account commands' work is in `calls` (also run by `quick`, without Typer); these are their Typer faces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any

import grpc
import typer
from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pynode.app.cli import calls
from pynode.app.cli.calls import TIMEOUT_SECONDS, bearer, channel, role_name
from pynode.app.cli.common import fail, local_time, read_password, server_address
from pynode.app.cli.options import Server

console = Console(soft_wrap=True)  # a line per message, whatever the width: scripts read these


def print_table(
    headers: tuple[str, ...],
    rows: Sequence[tuple[str, ...]],
    terminal: dict[int, tuple[str, Callable[[str], str]]] | None = None,
) -> None:
    """A table on a terminal; tab-separated lines, a header first and never wrapped, for pipes and scripts.

    `terminal` names columns shown otherwise to people: index -> (heading, how a cell reads), such as a size
    in bytes shown as 1.4 MiB (scripts keep the bytes)."""
    if console.is_terminal:
        shown = terminal or {}
        table = Table()
        for i, h in enumerate(headers):
            if h == "id" or h.endswith("_id"):  # ids are what the next command needs: whole, on one line
                widest = max((len(row[i]) for row in rows), default=len(h))
                table.add_column(h, no_wrap=True, min_width=widest)
            else:
                table.add_column(shown[i][0] if i in shown else h)
        for row in rows:
            # Text, not markup: names are other people's (a display name "[/bold]" crashed `users list`, and
            # "[link=...]" drew a hyperlink into an admin's table).
            table.add_row(*(Text(shown[i][1](cell) if i in shown else cell) for i, cell in enumerate(row)))
        console.print(table)
        return
    for line in (headers, *rows):
        print("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in line))


def login(
    provider: Annotated[
        str | None, typer.Argument(help="With --sso or --device: the sign-in provider (the only one by default)")
    ] = None,
    email: Annotated[str, typer.Option(help="Your account's e-mail address (password sign-in)")] = "",
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin instead of prompting")] = False,
    sso: Annotated[bool, typer.Option("--sso", help="Sign in with single sign-on in your browser")] = False,
    device: Annotated[
        bool, typer.Option("--device", help="Single sign-on without a browser here: enter a code elsewhere")
    ] = False,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="With --sso: print the URL only")] = False,
    server: Server = None,
) -> None:
    """Sign in; the tokens are kept in your config directory (mode 0600) and refreshed when they expire."""
    address = server_address(server)
    if sso or device:
        if email or password_stdin:
            fail("--sso and --device sign in through the provider: leave out --email and --password-stdin")
        from pynode.app.cli import sso as single_sign_on

        if device:
            single_sign_on.login_device(address, provider)
        else:
            single_sign_on.login_sso(address, provider, open_browser=not no_browser)
        return
    if provider:
        fail(f"{provider!r}: a provider is named only with --sso or --device")
    if not email:
        fail("give --email (password sign-in), or --sso / --device (single sign-on)")
    calls.login(address, email, password_stdin)


def logout(
    all_sessions: Annotated[bool, typer.Option("--all", help="End every session of this account")] = False,
    server: Server = None,
) -> None:
    """End this session on the server and forget its tokens here."""
    calls.logout(server_address(server), all_sessions)


def whoami(server: Server = None) -> None:
    """Show the signed-in account."""
    calls.whoami(server_address(server))


def token(server: Server = None) -> None:
    """Print a fresh access token (for grpcurl: -H "authorization: Bearer $(devpynode token)")."""
    calls.token(server_address(server))


def health(
    service: Annotated[
        str, typer.Option(help="A service: its full name, or auth, ai, chat, files; empty asks about the process")
    ] = "",
    server: Server = None,
) -> None:
    """Exit 0 when the server (or one service) is SERVING, 1 otherwise: for probes and scripts."""
    if calls.health(server_address(server), service):
        raise typer.Exit(1)


users = typer.Typer(help="Accounts: list, create, set-role, disable (admins), create-admin (on the server machine).")


def _all_users(opened: grpc.Channel, address: str) -> Iterator[auth_pb2.User]:
    """Every account, page by page (admins only)."""
    stub = auth_pb2_grpc.UserAdminServiceStub(opened)
    page = ""
    while True:
        response = stub.ListUsers(
            auth_pb2.ListUsersRequest(page_size=100, page_token=page),
            metadata=bearer(address),
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
    with channel(address) as opened:
        rows = [
            (user.id, user.email, user.display_name, role_name(user.role), "yes" if user.disabled else "")
            for user in _all_users(opened, address)
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
    admin_call = bearer(address) if admin else ()  # signed in as an admin before anything is created
    password = read_password(password_stdin, confirm=True, prompt="Password for the new account")
    with channel(address) as opened:
        created = auth_pb2_grpc.AuthServiceStub(opened).Register(
            auth_pb2.RegisterRequest(email=email, password=password, display_name=display_name or email.split("@")[0]),
            timeout=TIMEOUT_SECONDS,
        )
        if admin:
            auth_pb2_grpc.UserAdminServiceStub(opened).UpdateUser(
                auth_pb2.UpdateUserRequest(user_id=created.user.id, role=auth_pb2.ROLE_ADMIN),
                metadata=admin_call,
                timeout=TIMEOUT_SECONDS,
            )
    console.print(f"created {created.user.email} ({created.user.id}){' as admin' if admin else ''}", markup=False)


def _update(server: str | None, user: str, **changes: Any) -> auth_pb2.User:
    address = server_address(server)
    with channel(address) as opened:
        user_id = user if "@" not in user else _find(opened, address, user)
        response = auth_pb2_grpc.UserAdminServiceStub(opened).UpdateUser(
            auth_pb2.UpdateUserRequest(user_id=user_id, **changes), metadata=bearer(address), timeout=TIMEOUT_SECONDS
        )
    return response.user


def _find(opened: grpc.Channel, address: str, email: str) -> str:
    wanted = email.strip().lower()
    for user in _all_users(opened, address):
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
    console.print(f"{updated.email} is now {role_name(updated.role)}", markup=False)


@users.command("disable")
def disable(
    user: Annotated[str, typer.Argument(help="The account: its e-mail address or id")],
    enable: Annotated[bool, typer.Option("--enable", help="Enable it again instead")] = False,
    server: Server = None,
) -> None:
    """Disable an account (admins only): its sessions end at once. --enable undoes it."""
    updated = _update(server, user, disabled=not enable)
    console.print(f"{updated.email} is {'disabled' if updated.disabled else 'enabled'}", markup=False)


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
    with channel(address) as opened:
        user_id = user if "@" not in user else _find(opened, address, user)
        stub = auth_pb2_grpc.UserAdminServiceStub(opened)
        page, shown = "", 0
        while shown < limit:
            response = stub.ListAuditEvents(
                auth_pb2.ListAuditEventsRequest(
                    page_size=min(100, limit - shown), page_token=page, user_id=user_id, kind=kind
                ),
                metadata=bearer(address),
                timeout=TIMEOUT_SECONDS,
            )
            for event in response.events:
                details = " ".join(f"{k}={v}" for k, v in sorted(event.details.items()))
                when = local_time(event.time)
                rows.append(
                    (when, event.kind, event.actor, event.user_id, event.client_address, details, event.request_id)
                )
                shown += 1
            page = response.next_page_token
            if not page:
                break
    print_table(("time", "kind", "actor", "user", "address", "details", "request id"), rows)
