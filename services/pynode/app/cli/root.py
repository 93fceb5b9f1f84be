"""The Typer application behind `devpynode`: every command, its help and its usage errors.

Commands are imported when run (see `lazy`): a client command never loads the server's code.
"""

from __future__ import annotations

from typing import Annotated

import typer
from typer.exceptions import Abort, Exit, TyperException

from pynode.app.cli.common import version
from pynode.app.cli.lazy import LazyGroup

app = typer.Typer(
    name="devpynode",
    help="Dev-PyNode: a self-hostable AI development platform as a gRPC service mesh.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=LazyGroup,
)


def _show_version(value: bool) -> None:
    if value:
        print(f"devpynode {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit")
    ] = False,
    server: Annotated[
        str | None,
        typer.Option("--server", help="host:port of the mesh, for the command that follows [env DEVPYNODE_SERVER]"),
    ] = None,
) -> None:
    """Dev-PyNode: a self-hostable AI development platform as a gRPC service mesh."""


def run(args: list[str]) -> int:
    """Run one command through Typer; usage errors and help become an exit status (and one line)."""
    import sys

    try:
        result = app(args=args, prog_name="devpynode", standalone_mode=False)
    except TyperException as error:  # usage errors: a bad flag, a missing option
        ctx = getattr(error, "ctx", None)
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `devpynode`, or a bare group: help, not an error
            if ctx is not None:
                print(ctx.get_help())
            return 0
        hint = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
        print(f"devpynode: {error.format_message().rstrip('. ')}{hint}", file=sys.stderr)
        return int(error.exit_code)
    except Abort:
        print("devpynode: aborted", file=sys.stderr)
        return 130
    except Exit as done:
        return int(done.exit_code)
    return int(result) if isinstance(result, int) else 0
