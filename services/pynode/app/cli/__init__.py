"""The `devpynode` command: run the platform, and use it.

Every failure is one line on stderr and a non-zero exit status, never a traceback. A plain account command
(`whoami`, `token`, `health`, `login`, `logout`) runs without Typer (see `quick`); everything else goes
through the Typer application in `root`, whose commands are imported when run (see `lazy`).

grpc's C core logs to this process's stderr (GOAWAY on an idle connection, say): in a client command those
lines would land in the middle of a chat prompt, so they are turned off before grpc is first imported; the
server (`serve`) keeps them.
"""

from __future__ import annotations

import contextlib
import os
import sys


def _quiet_grpc(args: list[str]) -> None:
    command = next((word for word in args if not word.startswith("-")), "")
    if command != "serve":
        os.environ["GRPC_VERBOSITY"] = "NONE"
        os.environ.pop("GRPC_TRACE", None)


_quiet_grpc(sys.argv[1:])

from pynode.app.cli.common import CliError, take_root_server  # noqa: E402  (after the environment is set)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status. Called for this process's own command line (`argv` None), a
    plain account command ends the process once its output is flushed (see `_end_now`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    status, quick_ran = _run(args)
    if quick_ran and argv is None:
        _end_now(status)
    return status


def _run(args: list[str]) -> tuple[int, bool]:
    """The command's exit status, and whether it was a plain account command (run without Typer)."""
    quick_ran = False
    try:
        args = take_root_server(args)
        from pynode.app.cli import quick

        quick_ran = quick.taken(args)
        status = quick.run(args)
        if status is None:
            from pynode.app.cli import root

            status = root.run(args)
        return status, quick_ran
    except CliError as error:
        print(f"devpynode: {error}", file=sys.stderr)
        return error.status, quick_ran
    except KeyboardInterrupt:
        return 130, quick_ran
    except BrokenPipeError:
        # The reader went away (`devpynode token | true`): nothing more can reach it, and Python's own flush at
        # exit would fail again. Point stdout at /dev/null and end as a shell's `yes | true` does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141, quick_ran  # 128 + SIGPIPE
    except Exception as error:
        if not _is_settings_error(error):
            raise
        print(f"devpynode: {error}", file=sys.stderr)  # any command: a setting named in one line, as for serve
        return 2, quick_ran


def _end_now(status: int) -> None:
    """Exit without the interpreter's teardown: a plain account command has done its work (its files written,
    its channel closed), and tearing down grpc's C core and every imported module is a good part of a `whoami`
    (no exit handler has anything left to do: no log handler, no exporter is set up for these commands)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a reader gone (`devpynode token | true`): nothing more reaches it
            stream.flush()
    os._exit(status)


def _is_settings_error(error: BaseException) -> bool:
    """Whether it is a SettingsError, without importing the settings for commands that never read them."""
    settings = sys.modules.get("pynode.core.settings")
    return settings is not None and isinstance(error, settings.SettingsError)


if __name__ == "__main__":
    sys.exit(main())
