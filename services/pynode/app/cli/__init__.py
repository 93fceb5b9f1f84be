"""The `devpynode` command: run the platform, and use it.

Every failure is one line on stderr and a non-zero exit status, never a traceback. Commands are imported
when run (see `lazy`): a client command never loads the server's code.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer.exceptions import Abort, Exit, TyperException

from pynode.app.cli.common import CliError, version
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
) -> None:
    """Dev-PyNode: a self-hostable AI development platform as a gRPC service mesh."""


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status."""
    try:
        result = app(args=argv, prog_name="devpynode", standalone_mode=False)
    except CliError as error:
        print(f"devpynode: {error}", file=sys.stderr)
        return error.status
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
    except Exception as error:
        if not _is_settings_error(error):
            raise
        print(f"devpynode: {error}", file=sys.stderr)  # any command: a setting named in one line, as for serve
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result) if isinstance(result, int) else 0


def _is_settings_error(error: BaseException) -> bool:
    """Whether it is a SettingsError, without importing the settings for commands that never read them."""
    settings = sys.modules.get("pynode.core.settings")
    return settings is not None and isinstance(error, settings.SettingsError)


if __name__ == "__main__":
    sys.exit(main())
