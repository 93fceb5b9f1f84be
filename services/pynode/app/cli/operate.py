"""Commands that run on the server's machine: serve, migrate, users create-admin, keys, config check."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr

from pynode.app.cli.common import CliError, fail, read_password, settings_from
from pynode.app.settings import Settings, replace_server
from pynode.core import logs
from pynode.core.contract import is_email
from pynode.core.settings import SettingsError, env_name

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where embedded data lives [env DEVPYNODE_DATA_DIR; ./.devpynode]")
]


def _version() -> str:
    from importlib.metadata import version

    return version("devpynode")


def _banner(settings: Settings, server: Any, gateway: str) -> str:
    platform = server.platform
    lines = [f"Dev-PyNode {_version()}"]
    if settings.server.dev_mode:
        lines[0] += " in DEVELOPMENT MODE (dev signing key and service secret allowed; not for production)"
    lines.append(f"  gRPC       {settings.server.grpc_host}:{server.port}  ({', '.join(settings.chosen())})")
    lines.append(f"  http       {gateway}")
    if server.metrics_port:
        lines.append(f"  metrics    http://{settings.server.grpc_host}:{server.metrics_port}/metrics")
    else:
        lines.append("  metrics    off")
    for what, where in platform.describe().items():
        lines.append(f"  {what:<10} {where}")
    lines.append("  Ctrl-C stops gracefully; a second Ctrl-C forces the exit")
    return "\n".join(lines)


async def _serve(settings: Settings) -> None:
    from pynode.app.bootstrap import build
    from pynode.app.server import MeshServer

    platform = await build(settings)
    server = MeshServer(platform)
    try:
        await server.start()
    except BaseException:
        await server.stop(0)  # also closes the platform
        raise
    gateway, described = await _start_gateway(settings, server)
    # Human lines on stdout; the JSON log stream stays on stderr.
    print(_banner(settings, server, described), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():  # the second Ctrl-C (or SIGTERM): do not wait for anything
            print("devpynode: forced exit", file=sys.stderr, flush=True)
            os._exit(130)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await stop.wait()
    busy = server.metrics.in_flight()
    grace = settings.server.shutdown_grace_seconds
    print(
        f"devpynode: stopping; {busy} call(s) in flight get up to {grace:g} s to finish (Ctrl-C again forces)",
        file=sys.stderr,
        flush=True,
    )
    if gateway is not None:
        await gateway.stop()
    await server.stop()


async def _start_gateway(settings: Settings, server: Any) -> tuple[Any, str]:
    """The browsers' port (an Envoy child); when it cannot start, one line says why and gRPC goes on."""
    from pynode.app.local_gateway import LocalGateway

    port = settings.server.http_port
    if port < 0:
        return None, "off (DEVPYNODE_HTTP_PORT=-1)"
    gateway = LocalGateway(settings, server.port, set(settings.chosen()))
    problem = await gateway.start()
    if problem is not None:
        print(f"devpynode: gateway not started: {problem}; gRPC keeps serving", file=sys.stderr, flush=True)
        return None, f"not started ({problem})"
    server.edge.trust_gateway(gateway.secret)
    app = (
        "the web app and grpc-web"
        if gateway.web_served
        else "grpc-web; the web app is not built: scripts/run builds it when Node.js is installed"
    )
    scheme = "https" if settings.mesh.tls_cert_file else "http"
    return gateway, f"{scheme}://{settings.server.grpc_host}:{port}  ({app}, through Envoy)"


def serve(
    only: Annotated[str | None, typer.Option(help="Services to run, comma-separated: auth,ai,files,chat [all]")] = None,
    grpc_host: Annotated[str | None, typer.Option(help="Address to bind [env DEVPYNODE_GRPC_HOST; 127.0.0.1]")] = None,
    grpc_port: Annotated[
        int | None, typer.Option(help="gRPC port, 0 picks one [env DEVPYNODE_GRPC_PORT; 50051]")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus /metrics port, -1 disables [env DEVPYNODE_METRICS_PORT; 9464]")
    ] = None,
    data_dir: DataDir = None,
    workers: Annotated[
        str,
        typer.Option(
            help="Processes serving the port (SO_REUSEPORT), or `auto` for one per core; more than 1 needs Redis [1]"
        ),
    ] = "1",
) -> None:
    """Run the services (all of them by default) until SIGTERM or Ctrl-C."""
    count = _worker_count(workers)
    flags = {"only": only, "grpc_host": grpc_host, "grpc_port": grpc_port, "metrics_port": metrics_port}
    settings = settings_from({**flags, "data_dir": data_dir})
    logs.configure(settings.server.log_level)
    if count > 1:
        raise typer.Exit(_supervise(settings, count, flags, data_dir))
    if metrics_port is None and "metrics_port" not in settings.server.model_fields_set:
        settings = _free_metrics_port(settings)
    try:
        asyncio.run(_serve(settings))
    except SettingsError as exc:
        from pynode.app.cli.common import flag_named

        raise CliError(flag_named(str(exc), {k: v for k, v in flags.items() if v is not None}), 2) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _worker_count(value: str) -> int:
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    if not value.isdigit() or int(value) < 1:
        fail(f"--workers: {value!r} is not a number of processes (1, 2, ... or auto)", 2)
    return int(value)


def _supervise(settings: Settings, count: int, flags: dict[str, Any], data_dir: Path | None) -> int:
    """Run `count` workers on one port under a supervising parent; returns the exit status."""
    from pynode.app import migrate
    from pynode.app.server import bind_problem
    from pynode.app.workers import Supervisor

    server = settings.server
    if settings.stores.redis_url == "memory://":
        fail(
            f"DEVPYNODE_REDIS_URL: --workers {count} needs a shared Redis (sessions, limits and events must be the "
            "same in every worker); set redis://host:6379/0",
            2,
        )
    port = server.grpc_port or _free_port(server.grpc_host)
    problem = bind_problem(server.grpc_host, port)
    if problem:
        fail(f"DEVPYNODE_GRPC_PORT: cannot listen on {server.grpc_host}:{port} ({problem})", 2)
    url = settings.stores.resolved_database_url(server.data_dir)
    if url.startswith("sqlite"):  # migrated once here, not by every worker at once
        server.data_dir.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(url)
    command = [sys.executable, "-m", "pynode.app.cli", "serve", "--workers", "1"]
    for name, value in {**flags, "data_dir": data_dir}.items():
        if value is not None and name not in ("grpc_port", "metrics_port"):
            command += [f"--{name.replace('_', '-')}", str(value)]
    # Workers run no gateway of their own (they would all want its port): run Envoy beside them (see Deploy).
    env = {
        **os.environ,
        "DEVPYNODE_GRPC_PORT": str(port),
        "DEVPYNODE_METRICS_PORT": str(server.metrics_port),
        "DEVPYNODE_HTTP_PORT": "-1",
    }
    supervisor = Supervisor(count, command, env, server.metrics_port, server.shutdown_grace_seconds)
    print(f"Dev-PyNode {_version()}: {count} workers", flush=True)
    print(f"  gRPC       {server.grpc_host}:{port}  ({', '.join(settings.chosen())})", flush=True)
    if server.metrics_port > 0:
        print(f"  metrics    ports {server.metrics_port} to {server.metrics_port + count - 1}, one per worker")
    print("  Ctrl-C stops every worker gracefully", flush=True)
    return supervisor.run()


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def backup(
    destination: Annotated[str, typer.Argument(help="A new directory, or s3://BUCKET/PREFIX")],
    data_dir: DataDir = None,
) -> None:
    """Back up the database (pg_dump, or SQLite's backup API) and every stored file, with a manifest of checksums."""
    from pynode.app.backup import BackupError
    from pynode.app.backup import backup as take

    settings = settings_from({"data_dir": data_dir})
    try:
        manifest = take(settings, destination)
    except BackupError as exc:
        fail(str(exc))
    objects = sum(1 for name in manifest["files"] if name.startswith("objects/"))
    print(f"backed up the {manifest['database']['kind']} database and {objects} object(s) to {destination}")


def restore(
    source: Annotated[str, typer.Argument(help="A backup directory, or s3://BUCKET/PREFIX")],
    force: Annotated[bool, typer.Option(help="Replace accounts and files the target already holds")] = False,
    data_dir: DataDir = None,
) -> None:
    """Restore a backup into the configured database and storage (checksums checked first; an occupied target
    is refused without --force)."""
    from pynode.app.backup import BackupError
    from pynode.app.backup import restore as put_back

    settings = settings_from({"data_dir": data_dir})
    try:
        manifest = put_back(settings, source, force=force)
    except BackupError as exc:
        fail(str(exc))
    objects = sum(1 for name in manifest["files"] if name.startswith("objects/"))
    print(
        f"restored the {manifest['database']['kind']} database and {objects} object(s) taken {manifest['created_at']}"
    )


def _free_metrics_port(settings: Settings) -> Settings:
    """The default metrics port, or any free one when it is taken (an explicit port is never changed)."""
    from pynode.app.server import bind_problem

    server = settings.server
    if server.metrics_port > 0 and bind_problem(server.grpc_host, server.metrics_port):
        return replace_server(settings, metrics_port=0)
    return settings


def migrate(data_dir: DataDir = None) -> None:
    """Apply the database migrations of every service (serve does it itself for SQLite)."""
    from sqlalchemy.engine import make_url

    from pynode.app import migrate as migrations
    from pynode.core.db import Database, normalise_url

    settings = settings_from({"data_dir": data_dir})
    logs.configure("WARNING")
    url = settings.stores.resolved_database_url(settings.server.data_dir)
    if url.startswith("sqlite"):
        settings.server.data_dir.mkdir(parents=True, exist_ok=True)

    async def revisions() -> set[str]:
        db = Database(url)
        try:
            return await migrations.current(db)
        finally:
            await db.close()

    shown = make_url(normalise_url(url)).render_as_string(hide_password=True)  # also refuses unknown schemes
    try:
        before = asyncio.run(revisions())
        migrations.upgrade(url)
        after = asyncio.run(revisions())
    except Exception as exc:
        cause = getattr(exc, "orig", None) or exc
        fail(f"DEVPYNODE_DATABASE_URL: cannot migrate {shown} ({str(cause).strip().splitlines()[0]})", 2)
    names = ", ".join(sorted(after)) or "none"
    if before == after:
        print(f"devpynode: {shown} was already at the newest revisions ({names})")
    else:
        print(f"devpynode: migrated {shown} to {names} (was {', '.join(sorted(before)) or 'empty'})")


def create_admin(
    email: Annotated[str, typer.Option(help="The administrator's e-mail address")],
    display_name: Annotated[str, typer.Option(help="Name shown for a new account")] = "Administrator",
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin instead of prompting")] = False,
    data_dir: DataDir = None,
) -> None:
    """Create the first administrator in the database (or promote an existing account; its password stays)."""
    from pynode.app.bootstrap import Platform, build
    from pynode.auth.module import AuthComponents
    from pynode.auth.service import normalise_email

    if not is_email(email):
        fail(f"--email: {email!r} is not an e-mail address like name@example.com", 2)
    settings = replace_server(settings_from({"data_dir": data_dir}), only="auth", metrics_port=-1)
    logs.configure("WARNING")

    async def run() -> str:
        platform: Platform = await build(settings)
        try:
            parts = platform.component("auth")
            assert isinstance(parts, AuthComponents)
            existing = await parts.service.users.by_email(normalise_email(email))
            if existing is not None:
                if password_stdin:
                    sys.stdin.read()  # never left unread in a pipe; and never applied
                user = await parts.service.create_admin(email, None, display_name)
                done = f"devpynode: promoted {user.email} ({user.id}) to admin; its password is unchanged"
                if settings.stores.redis_url == "memory://":  # sessions live in the serving process's memory
                    done += "; a running server with the embedded defaults applies it at the account's next sign-in"
                return done
            password = read_password(password_stdin, confirm=True)
            user = await parts.service.create_admin(email, password, display_name)
            return f"devpynode: created admin {user.email} ({user.id})"
        finally:
            await platform.close()

    print(_domain_errors(run))


def _domain_errors(run: Any) -> str:
    """Run a coroutine function; a domain error (a weak password, say) becomes one line."""
    from pynode.core.errors import DomainError, InvalidArgument

    try:
        return str(asyncio.run(run()))
    except InvalidArgument as exc:
        detail = "; ".join(f"{v.field}: {v.description}" for v in exc.violations) or exc.message
        raise CliError(detail, 2) from None
    except DomainError as exc:
        raise CliError(exc.message) from None


def keys_generate() -> None:
    """Print a new Ed25519 private key (PEM) for DEVPYNODE_AUTH_PRIVATE_KEYS."""
    from pynode.auth.keys import generate_pem

    print(generate_pem(), end="")


def config_check(data_dir: DataDir = None) -> None:
    """Print the effective settings (secrets redacted) and whether they are safe to serve with."""
    settings = settings_from({"data_dir": data_dir})
    for section in settings.sections():
        print(f"[{type(section).__name__}]")
        for name, field in type(section).model_fields.items():
            value = getattr(section, name)
            if isinstance(value, SecretStr):
                shown = "(set, hidden)" if value.get_secret_value() else "(empty)"
            else:
                shown = str(value) if value not in ("", None) else "(empty)"
            source = "env" if name in section.model_fields_set else "default"
            print(f"  {env_name(name):<34} {shown:<40} [{source}] {field.description or ''}".rstrip())
    try:
        settings.check_production_safety()
    except SettingsError as exc:
        fail(str(exc), 2)
    mode = "development mode" if settings.server.dev_mode else "production mode"
    print(f"devpynode: settings are valid ({mode}; services: {', '.join(settings.chosen())})")
