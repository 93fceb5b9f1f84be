"""Commands loaded when they are run: `devpynode whoami` imports the client code alone, never the server's.

Each top-level command is named here by where it lives ("module:attribute"); its module is imported only
when that command (or `--help`, which lists them all) is asked for. A service module's own commands (its
optional `cli_commands` hook) are looked up the same way, only when a name is not one of ours.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import import_module
from typing import Any

import typer
from typer import _click as click  # Typer's own copy of click: its groups are made of these classes
from typer.core import TyperGroup

# name -> "module:attribute": a Typer callback, or a typer.Typer for a group. Listed in help order.
COMMANDS: dict[str, str] = {
    "serve": "pynode.app.cli.process:serve",
    "migrate": "pynode.app.cli.admin:migrate",
    "backup": "pynode.app.cli.admin:backup",
    "restore": "pynode.app.cli.admin:restore",
    "login": "pynode.app.cli.account:login",
    "logout": "pynode.app.cli.account:logout",
    "whoami": "pynode.app.cli.account:whoami",
    "token": "pynode.app.cli.account:token",
    "health": "pynode.app.cli.account:health",
    "models": "pynode.app.cli.model_admin:models",
    "ask": "pynode.app.cli.models:ask",
    "embed": "pynode.app.cli.models:embed",
    "users": "pynode.app.cli.account:users",
    "files": "pynode.app.cli.files:files",
    "keys": "pynode.app.cli.keys:keys",
    "chat": "pynode.app.cli.chat:chat",
    "gateway": "pynode.app.cli.gateway:gateway",
    "config": "pynode.app.cli.admin:config",
}


def _click_command(name: str, target: Any) -> click.Command:
    """The click command Typer makes for a callback or a group, as if registered on the root app."""
    holder = typer.Typer(rich_markup_mode=None)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name, cls=LazyGroup)
    else:
        holder.command(name)(target)
    return typer.main.get_group(holder).commands[name]


def load(spec: str) -> Any:
    module, _, attribute = spec.partition(":")
    return getattr(import_module(module), attribute)


@functools.cache
def module_commands() -> dict[str, Callable[..., Any]]:
    """Every service module's own commands, "GROUP COMMAND" -> callback (modules without the hook add none)."""
    from pynode.app.cli.host import HOST
    from pynode.app.modules import MODULES
    from pynode.core.module import ModuleCommands

    found: dict[str, Callable[..., Any]] = {}
    for module in MODULES:
        if isinstance(module, ModuleCommands):
            found.update(module.cli_commands(HOST))
    return found


class LazyGroup(TyperGroup):
    """A group whose commands are imported on first use; the root's come from `COMMANDS`."""

    def _path(self) -> str:
        return "" if self.name in ("", "devpynode") else self.name or ""

    def _module_names(self) -> list[str]:
        prefix = self._path()
        names = [key.split(" ", 1) for key in module_commands()]
        if prefix:
            return [parts[1] for parts in names if len(parts) == 2 and parts[0] == prefix]
        return [parts[0] for parts in names]

    def list_commands(self, ctx: click.Context) -> list[str]:
        listed = list(super().list_commands(ctx))
        if not self._path():
            listed += [name for name in COMMANDS if name not in listed]
        return listed + [name for name in self._module_names() if name not in listed]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            found = self._load(cmd_name)
            if found is not None:
                self.commands[cmd_name] = found
        return super().get_command(ctx, cmd_name)

    def _load(self, name: str) -> click.Command | None:
        prefix = self._path()
        if not prefix and name in COMMANDS:
            return _click_command(name, load(COMMANDS[name]))
        if prefix and f"{prefix} {name}" in module_commands():
            return _click_command(name, module_commands()[f"{prefix} {name}"])
        if not prefix and name in self._module_names():  # a group that only modules add to
            return _click_command(name, typer.Typer(no_args_is_help=True))
        return None
