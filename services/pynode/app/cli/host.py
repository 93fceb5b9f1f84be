"""The CLI's side of a service module's own commands: settings, the platform with one service, one-line errors."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

from pynode.app.cli.common import CliError, fail, read_password, settings_from


class Host:
    """`pynode.core.commands.CommandHost` for `devpynode`."""

    def fail(self, message: str, status: int = 1) -> NoReturn:
        fail(message, status)

    def read_password(self, from_stdin: bool, *, confirm: bool) -> str:
        return read_password(from_stdin, confirm=confirm)

    def run(self, service: str, data_dir: Path | None, work: Callable[[Any, bool], Awaitable[str]]) -> None:
        from pynode.app.bootstrap import build
        from pynode.app.settings import replace_server
        from pynode.core import logs
        from pynode.core.errors import DomainError, InvalidArgument

        settings = replace_server(settings_from({"data_dir": data_dir}), only=service, metrics_port=-1)
        logs.configure("WARNING")

        async def run() -> str:
            platform = await build(settings)
            try:
                return await work(platform.component(service), settings.stores.redis_url != "memory://")
            finally:
                await platform.close()

        try:
            print(asyncio.run(run()))
            url = settings.stores.resolved_database_url(settings.server.data_dir)
            if url.startswith("sqlite"):  # the server must read the same file: a new user ran this in another folder
                where = url.split("///", 1)[-1]
                print(f"(written to {where}: serve with the same --data-dir to see it)", file=sys.stderr)
        except InvalidArgument as exc:  # a weak password, say: the fields at fault in one line
            detail = "; ".join(f"{v.field}: {v.description}" for v in exc.violations) or exc.message
            raise CliError(detail, 2) from None
        except DomainError as exc:
            raise CliError(exc.message) from None


HOST = Host()
