"""What every command shares: the one-line error, the server address, settings from flags.

The settings (and through them every service's module) are imported only by commands that read them:
a client command such as `whoami` needs grpc, typer and the stubs alone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import grpc
import typer

if TYPE_CHECKING:
    from pynode.app.settings import Settings

DEFAULT_SERVER = "127.0.0.1:50051"

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where embedded data lives [env DEVPYNODE_DATA_DIR; ./.devpynode]")
]


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


def server_address(flag: str | None) -> str:
    """`--server`, else DEVPYNODE_SERVER, else the default."""
    return flag or os.environ.get("DEVPYNODE_SERVER") or DEFAULT_SERVER


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
    if code == grpc.StatusCode.UNAVAILABLE and not _has_rich_details(error):
        return CliError(
            f"cannot reach the server at {server} (is `devpynode serve` running? --server sets the address)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CliError(f"the server at {server} did not answer in time")
    name = code.name if code is not None else "ERROR"
    return CliError(f"{details} ({name})")


def _has_rich_details(error: Any) -> bool:
    metadata = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    return any(key == "grpc-status-details-bin" for key, _ in metadata or ())


def read_password(from_stdin: bool, *, confirm: bool, prompt: str = "Password") -> str:
    """From stdin (one line) when asked or when stdin is not a terminal; else prompted without echo."""
    import getpass

    if from_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("no password on standard input (send one line)", 2)
        return password
    first = getpass.getpass(f"{prompt}: ")
    if not first:
        fail("no password given", 2)
    if confirm and getpass.getpass("Repeat: ") != first:
        fail("the passwords do not match", 2)
    return first
