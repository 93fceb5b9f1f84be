"""What every command shares: the one-line error, the server address, settings from flags.

The settings (and through them every service's module) are imported only by commands that read them, and
nothing here imports Typer or Rich: a client command such as `whoami` needs grpc and the stubs alone (see
`quick`).
"""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import grpc

if TYPE_CHECKING:
    from pynode.app.settings import Settings

DEFAULT_SERVER = "127.0.0.1:50051"
# grpc's own target forms, passed through as they are (a Unix socket, a resolver name).
_TARGET_SCHEMES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")
_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$")


def version() -> str:
    """The installed package's version."""
    from importlib.metadata import version

    return version("devpynode")


class CliError(Exception):
    """A failure to report as one line on stderr, with an exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def fail(message: str, status: int = 1) -> NoReturn:
    raise CliError(message, status)


def open_channel(server: str) -> grpc.Channel:
    """A channel to the mesh: TLS, verified against DEVPYNODE_TLS_CA_FILE, when that is set (with
    DEVPYNODE_TLS_CLIENT_CERT_FILE/_KEY_FILE as the client certificate where the mesh asks for one)."""
    if not os.environ.get("DEVPYNODE_TLS_CA_FILE"):  # plaintext: no need to load the settings' module for TLS
        return grpc.insecure_channel(server)
    from pynode.core import tls

    credentials = tls.environment_channel_credentials()
    if credentials is None:
        return grpc.insecure_channel(server)
    return grpc.secure_channel(server, credentials)


class RootServer:
    """`devpynode --server X COMMAND`: the address given before the command, for this run of `main`."""

    given: str | None = None


def take_root_server(args: list[str]) -> list[str]:
    """The arguments without a leading `--server X` (or `--server=X`), which is kept in `RootServer`."""
    RootServer.given = None
    rest = list(args)
    while rest and (rest[0] == "--server" or rest[0].startswith("--server=")):
        option = rest.pop(0)
        if "=" in option:
            RootServer.given = option.split("=", 1)[1]
        elif rest:
            RootServer.given = rest.pop(0)
        else:
            fail("--server needs a value: host:port of the mesh, e.g. 127.0.0.1:50051", 2)
    return rest


def server_address(flag: str | None) -> str:
    """The command's `--server`, else one given before the command, else DEVPYNODE_SERVER, else the default;
    checked to be host:port, with an error naming where it came from."""
    if flag:
        return checked_address(flag, "--server")
    if RootServer.given:
        return checked_address(RootServer.given, "--server")
    from_env = os.environ.get("DEVPYNODE_SERVER")
    if from_env:
        return checked_address(from_env, "DEVPYNODE_SERVER")
    return DEFAULT_SERVER


def checked_address(address: str, source: str) -> str:
    """`address` when it is host:port (or one of grpc's own target forms); else a one-line error."""
    address = address.strip()
    if address.startswith(_TARGET_SCHEMES):
        return address
    if "://" in address:
        fail(
            f"{source}: {address!r} is a URL; give the gRPC address as host:port, e.g. {DEFAULT_SERVER} "
            "(the http:// port is for browsers)",
            2,
        )
    found = _HOST_PORT.match(address)
    if found is None or not 0 < int(found.group(1)) < 65536:
        fail(f"{source}: {address!r} is not host:port, e.g. {DEFAULT_SERVER}", 2)
    return address


def settings_from(flags: dict[str, Any]) -> Settings:
    """Settings from the environment and the flags given (None means not given); an error names the
    flag when the value came from one, the variable otherwise."""
    from pynode.app.settings import load
    from pynode.core.settings import SettingsError

    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return load(**given)
    except SettingsError as exc:
        raise CliError(flag_named(str(exc), given), 2) from None


def flag_named(message: str, given: dict[str, Any]) -> str:
    """A settings message with the variable replaced by the flag that set it."""
    from pynode.core.settings import env_name

    for field in given:
        variable = env_name(field)
        if message.startswith(variable + ":"):
            return "--" + field.replace("_", "-") + message[len(variable) :]
    return message


def rpc_error(error: grpc.aio.AioRpcError | grpc.RpcError, server: str) -> CliError:
    """A failed call as one line: what the server said, or that it could not be reached."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    if (details and any(sign in details for sign in _HTTP_ANSWERS)) or _unrouted_by_envoy(error, code):
        return CliError(
            f"{server} answers HTTP, not gRPC: that is the HTTP port (grpc-web and the web app, for browsers); "
            f"use the gRPC port, {DEFAULT_SERVER.rsplit(':', 1)[1]} by default (--server {DEFAULT_SERVER})"
        )
    if code == grpc.StatusCode.UNAVAILABLE and not _has_rich_details(error):
        return CliError(
            f"cannot reach the server at {server} (is `devpynode serve` running? --server sets the address)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CliError(f"the server at {server} did not answer in time")
    name = code.name if code is not None else "ERROR"
    said = (details or "").rstrip(".; ")
    if code == grpc.StatusCode.PERMISSION_DENIED and "admin role" in said:
        said += "; made an admin just now? sign in again (`devpynode login`) for a token that carries it"
    return CliError(f"{said} ({name})")


# What grpc says when the port answers HTTP instead of gRPC (Envoy's browser port, a web server).
_HTTP_ANSWERS = ("Received http2 header with status", "Failed parsing HTTP/2", "http1.x")


def _unrouted_by_envoy(error: Any, code: grpc.StatusCode | None) -> bool:
    """Envoy's own UNIMPLEMENTED (no message, `server: envoy`): the browsers' port, which routes only the
    platform's services (not health, say)."""
    if code != grpc.StatusCode.UNIMPLEMENTED or (error.details() if hasattr(error, "details") else ""):
        return False
    metadata = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    return any(key == "server" and value == "envoy" for key, value in metadata or ())


def _has_rich_details(error: Any) -> bool:
    metadata = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    return any(key == "grpc-status-details-bin" for key, _ in metadata or ())


def local_time(stamp: Any) -> str:
    """A protobuf Timestamp as this machine's local time to the second, with its zone: 2026-12-03 12:05:16 UTC."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(stamp.seconds, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def human_size(size: int) -> str:
    """Bytes as people read them: 512 B, 1.4 KiB, 12.0 MiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def read_password(from_stdin: bool, *, confirm: bool, prompt: str = "Password") -> str:
    """From stdin (one line) when asked or when stdin is not a terminal; else prompted without echo."""
    import getpass

    if from_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("no password on standard input (send one line)", 2)
        if confirm:  # a second line, when sent, is the repeat, and must match
            repeat = sys.stdin.readline()
            if repeat and repeat.rstrip("\r\n") != password:
                fail("the passwords on standard input do not match (send it once, or twice the same)", 2)
        return password
    first = getpass.getpass(f"{prompt}: ")
    if not first:
        fail("no password given", 2)
    if confirm and getpass.getpass("Repeat: ") != first:
        fail("the passwords do not match", 2)
    return first
