"""The `devpynode` command: serve, migrate, users create-admin, keys generate."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pynode.core import logs
from pynode.core.settings import Settings, SettingsError


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("data_dir", "grpc_port", "grpc_host", "only", "metrics_port"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        if not first["loc"]:  # a whole-model check: its message names the setting already
            raise SettingsError(message) from None
        where = "DEVPYNODE_" + "_".join(str(p) for p in first["loc"]).upper()
        raise SettingsError(f"{where}: {message}") from None


async def _serve(settings: Settings) -> None:
    from pynode.core.bootstrap import build, describe
    from pynode.core.server import MeshServer

    platform = await build(settings)
    server = MeshServer(platform)
    try:
        await server.start()
    except BaseException:
        await server.stop(0)  # also closes the platform
        raise
    print(
        f"devpynode: serving {', '.join(settings.services())} on {settings.grpc_host}:{server.port} "
        f"({describe(platform)['database']}); Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


async def _create_admin(settings: Settings, email: str, display_name: str, password: str) -> str:
    from pynode.core.bootstrap import build

    platform = await build(settings.model_copy(update={"only": "auth"}))
    try:
        assert platform.auth is not None
        user = await platform.auth.service.create_admin(email, password, display_name)
        return str(user.id)
    finally:
        await platform.close()


def _read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat: ") != first:
        raise SettingsError("passwords do not match")
    return first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devpynode", description="Dev-PyNode gRPC service mesh")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the services (all of them by default)")
    serve.add_argument("--only", help="comma-separated subset: auth,ai,chat,files")
    serve.add_argument("--grpc-host", dest="grpc_host")
    serve.add_argument("--grpc-port", dest="grpc_port", type=int)
    serve.add_argument("--metrics-port", dest="metrics_port", type=int, help="-1 disables /metrics")
    serve.add_argument("--data-dir", dest="data_dir", type=Path)
    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("--data-dir", dest="data_dir", type=Path)
    users = sub.add_parser("users", help="manage accounts").add_subparsers(dest="users_command", required=True)
    admin = users.add_parser("create-admin", help="create an administrator (or promote an existing account)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--display-name", default="Administrator")
    admin.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    admin.add_argument("--data-dir", dest="data_dir", type=Path)
    keys = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys_command", required=True)
    keys.add_parser("generate", help="print a new Ed25519 private key (PEM) for DEVPYNODE_AUTH_PRIVATE_KEYS")
    args = parser.parse_args(argv)

    try:
        if args.command == "keys":
            from pynode.auth.keys import generate_pem

            print(generate_pem(), end="")
            return 0
        settings = _settings(args)
        logs.configure(settings.log_level)
        if args.command == "serve":
            asyncio.run(_serve(settings))
        elif args.command == "migrate":
            from pynode.core import migrate

            if settings.resolved_database_url().startswith("sqlite"):
                settings.data_dir.mkdir(parents=True, exist_ok=True)
            migrate.upgrade(settings.resolved_database_url())
            print("devpynode: database is up to date", file=sys.stderr)
        elif args.command == "users":
            password = _read_password(args.password_stdin)
            user_id = asyncio.run(_create_admin(settings, args.email, args.display_name, password))
            print(f"devpynode: admin {args.email.strip().lower()} is {user_id}")
    except SettingsError as exc:
        print(f"devpynode: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
