"""`devpynode gateway config`: the browser gateway's Envoy configuration, for compose, Helm or by hand."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from pynode.app.cli.common import fail
from pynode.app.gateway import GatewayOptions, Upstream, compose_options, gateway_modules, helm_template, render
from pynode.app.gateway_tracing import TraceExport

gateway = typer.Typer(help="The browser gateway (Envoy: grpc-web in front of the services).", no_args_is_help=True)


def _upstream(value: str, service: str) -> Upstream:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        fail(f"--upstream {service}={value}: give host:port", 2)
    return Upstream(host.strip("[]"), int(port))


@gateway.command("config")
def config(
    upstream: Annotated[
        list[str] | None,
        typer.Option(
            help="SERVICE=HOST:PORT for each service (default: compose's names, SERVICE:50051; the door's HTTP "
            "listener door:8090)"
        ),
    ] = None,
    listen_port: Annotated[int, typer.Option(help="Port browsers connect to")] = 8080,
    admin_port: Annotated[int, typer.Option(help="Envoy's admin port, on 127.0.0.1")] = 9901,
    origin: Annotated[
        list[str] | None, typer.Option(help="A web origin allowed to call (repeat; default: http://localhost:8080)")
    ] = None,
    tls_cert_file: Annotated[str, typer.Option(help="Certificate chain (PEM): TLS 1.3 at the listener")] = "",
    tls_key_file: Annotated[str, typer.Option(help="Its private key (PEM)")] = "",
    web: Annotated[
        str, typer.Option(help="HOST:PORT of `devpynode gateway web` (the web app's files), or none")
    ] = "web:8000",
    helm: Annotated[
        str, typer.Option(help="plain|tls: print the Helm chart's template instead (charts/dev-pynode/files/)")
    ] = "",
    traces: Annotated[
        str,
        typer.Option(
            help="Envoy's spans: an OTLP/gRPC collector URL (http://phoenix:4317), `env` for the standard OTEL_* "
            "variables the services read, or none"
        ),
    ] = "none",
) -> None:
    """Print Envoy's configuration (YAML): one route per service package, one health-checked cluster each."""
    if helm:
        if helm not in ("plain", "tls"):
            fail("--helm: plain or tls", 2)
        print(helm_template(tls=helm == "tls"), end="")
        return
    options = compose_options()
    if upstream:
        known = gateway_modules()
        chosen = {}
        for item in upstream:
            service, sep, address = item.partition("=")
            if not sep or service not in known:
                fail(f"--upstream {item}: give SERVICE=HOST:PORT with SERVICE one of {', '.join(known)}", 2)
            chosen[service] = _upstream(address, service)
        options = GatewayOptions(upstreams={**options.upstreams, **chosen})
    if bool(tls_cert_file) != bool(tls_key_file):
        fail("--tls-cert-file and --tls-key-file go together", 2)
    options = GatewayOptions(
        web=None if web == "none" else _upstream(web, "web"),
        upstreams=options.upstreams,
        listen_port=listen_port,
        admin_port=admin_port,
        allowed_origins=tuple(origin) if origin else options.allowed_origins,
        tls_cert_file=tls_cert_file,
        tls_key_file=tls_key_file,
        traces=_traces(traces),
    )
    print(render(options), end="")


def _traces(value: str) -> TraceExport | None:
    if value == "none":
        return None
    if value == "env":
        return TraceExport.from_environment()
    if not value.startswith(("http://", "https://")):
        fail(f"--traces {value}: give an OTLP/gRPC URL (http://HOST:4317), env or none", 2)
    return TraceExport.from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": value, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


@gateway.command("web")
def web_files(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="The built web app [env DEVPYNODE_WEB_DIR; web/dist]")
    ] = None,
) -> None:
    """Serve the built web app's files to the gateway: compose's and Helm's Envoy send every path that is not a
    service's here (the same server `devpynode serve` runs behind its own Envoy)."""
    from pynode.app.local_gateway import web_dir
    from pynode.app.webfiles import WebFiles

    root = directory or web_dir(os.environ.get("DEVPYNODE_WEB_DIR", ""))
    if not (root / "index.html").is_file():
        fail(f"--dir {root}: no index.html there (build the app: cd web && npm ci && npm run build)", 2)

    async def run() -> None:
        files = WebFiles(root)
        bound = await files.start(host, port)
        print(f"serving {root} on http://{host}:{bound}", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        await files.stop()

    asyncio.run(run())
