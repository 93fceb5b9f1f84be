"""What the `devpynode` command lends a service module's own commands (the `cli_commands` hook).

A module's command parses its own flags; the host loads the settings, builds the platform with that
service alone, hands over the module's wired component and closes it, and turns failures into one line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, Protocol


class CommandHost(Protocol):
    """The CLI's side of a module command."""

    def fail(self, message: str, status: int = 1) -> NoReturn:
        """Stop with one line on stderr and `status` (2: bad usage or settings)."""

    def read_password(self, from_stdin: bool, *, confirm: bool) -> str:
        """A password from stdin (one line) or a prompt without echo."""

    def run(self, service: str, data_dir: Path | None, work: Callable[[Any, bool], Awaitable[str]]) -> None:
        """Build `service` alone from the environment's settings (and `data_dir`), await
        `work(component, shared_stores)` and print the line it returns; `shared_stores` is False when
        sessions and caches live in a serving process's memory (the embedded defaults). A domain error
        from `work` becomes one line."""
