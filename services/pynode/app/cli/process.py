"""Commands that run the platform's processes: serve (one process, or workers under a supervisor), with
the browsers' gateway beside it, and the ports they pick."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from pynode.app.cli.common import CliError, fail, settings_from, version
from pynode.app.cli.options import DataDir
from pynode.app.settings import Settings, replace_server
from pynode.core import logs
from pynode.core.settings import SettingsError

log = logging.getLogger("pynode.serve")


def _banner(settings: Settings, server: Any, gateway: str) -> str:
    platform = server.platform
    lines = [f"Dev-PyNode {version()}"]
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
    from pynode.core import tracing

    # Before the platform is built: its engines and clients are instrumented as they are made.
    try:
        if tracing.configure(_service_name(settings)):
            print(f"devpynode: traces on, exported to {tracing.destination()}", file=sys.stderr, flush=True)
    except tracing.TracingUnavailable as missing:
        print(f"devpynode: {missing}; serving without traces", file=sys.stderr, flush=True)
    try:
        await _serve_traced(settings)
    finally:
        tracing.shutdown()  # what is buffered is exported before the process ends


def _service_name(settings: Settings) -> str:
    """`devpynode`, or `devpynode-<services>` for a process that runs some of them (OTEL_SERVICE_NAME wins)."""
    from pynode.app import modules

    chosen = settings.chosen()
    return "devpynode" if set(modules.names()) <= set(chosen) else "devpynode-" + "-".join(chosen)


async def _serve_traced(settings: Settings) -> None:
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
    # What start-up made (modules, descriptors, settings, pools) lives as long as the process: frozen out of the
    # collector's generations, it is no longer walked by every full collection (a cheap call's throughput
    # rose about a tenth on the bench).
    gc.collect()
    gc.freeze()
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
    http_ports = {name: part.http_port for name, part in server.platform.parts.items() if part.http_port}
    gateway = LocalGateway(settings, server.port, set(settings.chosen()), http_ports)
    problem = await gateway.start()
    if problem is not None:
        print(f"devpynode: gateway not started: {problem}; gRPC keeps serving", file=sys.stderr, flush=True)
        return None, f"not started ({problem})"
    server.edge.trust_gateway(gateway.secret)
    if gateway.web_building:
        app = "grpc-web, and the web app once scripts/run has built it"
    elif gateway.web_served:
        app = "the web app and grpc-web"
    else:
        app = "grpc-web; the web app is not built: scripts/run builds it when Node.js is installed"
    door = "; the OpenAI-compatible API at /v1" if "door" in http_ports else ""
    scheme = "https" if settings.mesh.tls_cert_file else "http"
    return gateway, f"{scheme}://{settings.server.grpc_host}:{port}  ({app}{door}; through Envoy)"


def serve(
    only: Annotated[
        str | None, typer.Option(help="Services to run, comma-separated: auth,ai,files,chat,door [all]")
    ] = None,
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
    _keep_private(settings.server.data_dir)
    if count > 1:
        raise typer.Exit(_supervise(settings, count, flags, data_dir))
    if metrics_port is None and "metrics_port" not in settings.server.model_fields_set:
        settings = _free_metrics_port(settings)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(settings.server.event_loop)) as runner:
            runner.run(_serve(settings))
    except SettingsError as exc:
        from pynode.app.cli.common import flag_named

        raise CliError(flag_named(str(exc), {k: v for k, v in flags.items() if v is not None}), 2) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop unless asked for asyncio's own loop: grpc.aio's calls schedule several callbacks and futures each,
    and on uvloop a cheap call costs 9-16% less server CPU (issue 25; grpc.aio's completion-queue poller
    wakes either loop the same way, through a socket it reads)."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # not built for this platform (Windows)
        return None
    return uvloop.new_event_loop


def _keep_private(data_dir: Path) -> None:
    """Owner-only files from here on: the data directory holds the database (e-mails, password hashes, every
    message), the key-value file, uploads and keys; on a shared machine other users must read none of it."""
    os.umask(0o077)  # what serve, its workers and its children (Envoy, the local model) create
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if data_dir.stat().st_mode & 0o077:
        try:
            data_dir.chmod(0o700)  # made before this rule, or by hand: closing the directory closes what is in it
        except PermissionError:
            log.warning("the data directory %s is readable by others and not ours to change", data_dir)


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
    print(f"Dev-PyNode {version()}: {count} workers", flush=True)
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


def _free_metrics_port(settings: Settings) -> Settings:
    """The default metrics port, or any free one when it is taken (an explicit port is never changed)."""
    from pynode.app.server import bind_problem

    server = settings.server
    if server.metrics_port > 0 and bind_problem(server.grpc_host, server.metrics_port):
        return replace_server(settings, metrics_port=0)
    return settings
