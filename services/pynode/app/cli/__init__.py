"""The `devpynode` command: run the platform, and use it.

Every failure is one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer.exceptions import Abort, Exit, TyperException

from pynode.app.cli import account, chat, files, gateway, models, operate
from pynode.app.cli.common import CliError
from pynode.core.settings import SettingsError

app = typer.Typer(
    name="devpynode",
    help="Dev-PyNode: a self-hostable AI development platform as a gRPC service mesh.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        print(f"devpynode {operate._version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    """Dev-PyNode: a self-hostable AI development platform as a gRPC service mesh."""


app.command()(operate.serve)
app.command()(operate.migrate)
app.command()(operate.backup)
app.command()(operate.restore)
app.command()(account.login)
app.command()(account.logout)
app.command()(account.whoami)
app.command()(account.token)
app.command()(account.health)
app.command()(models.models)
app.command()(models.ask)
account.users.command("create-admin")(operate.create_admin)
app.add_typer(account.users, name="users")
app.add_typer(files.files, name="files")
app.add_typer(chat.chat, name="chat")
app.add_typer(gateway.gateway, name="gateway")
keys = typer.Typer(help="Signing keys for access tokens.", no_args_is_help=True)
keys.command("generate")(operate.keys_generate)
app.add_typer(keys, name="keys")
config = typer.Typer(help="The effective settings.", no_args_is_help=True)
config.command("check")(operate.config_check)
app.add_typer(config, name="config")


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status."""
    try:
        result = app(args=argv, prog_name="devpynode", standalone_mode=False)
    except CliError as error:
        print(f"devpynode: {error}", file=sys.stderr)
        return error.status
    except SettingsError as error:  # any command: a setting named in one line, as for serve
        print(f"devpynode: {error}", file=sys.stderr)
        return 2
    except TyperException as error:  # usage errors: a bad flag, a missing option
        ctx = getattr(error, "ctx", None)
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `devpynode`, or a bare group: help, not an error
            if ctx is not None:
                print(ctx.get_help())
            return 0
        hint = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
        print(f"devpynode: {error.format_message()}{hint}", file=sys.stderr)
        return int(error.exit_code)
    except Abort:
        print("devpynode: aborted", file=sys.stderr)
        return 130
    except Exit as done:
        return int(done.exit_code)
    except KeyboardInterrupt:
        return 130
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
