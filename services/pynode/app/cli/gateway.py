"""`devpynode gateway config`: the browser gateway's Envoy configuration, for compose, Helm or by hand."""

from __future__ import annotations

from typing import Annotated

import typer

from pynode.app.cli.common import fail
from pynode.app.gateway import GatewayOptions, Upstream, compose_options, helm_template, render, service_packages

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
        typer.Option(help="SERVICE=HOST:PORT for each service (default: compose's names, SERVICE:50051)"),
    ] = None,
    listen_port: Annotated[int, typer.Option(help="Port browsers connect to")] = 8080,
    admin_port: Annotated[int, typer.Option(help="Envoy's admin port, on 127.0.0.1")] = 9901,
    origin: Annotated[
        list[str] | None, typer.Option(help="A web origin allowed to call (repeat; default: http://localhost:8080)")
    ] = None,
    tls_cert_file: Annotated[str, typer.Option(help="Certificate chain (PEM): TLS 1.3 at the listener")] = "",
    tls_key_file: Annotated[str, typer.Option(help="Its private key (PEM)")] = "",
    helm: Annotated[
        str, typer.Option(help="plain|tls: print the Helm chart's template instead (charts/dev-pynode/files/)")
    ] = "",
) -> None:
    """Print Envoy's configuration (YAML): one route per service package, one health-checked cluster each."""
    if helm:
        if helm not in ("plain", "tls"):
            fail("--helm: plain or tls", 2)
        print(helm_template(tls=helm == "tls"), end="")
        return
    options = compose_options()
    if upstream:
        known = service_packages()
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
        upstreams=options.upstreams,
        listen_port=listen_port,
        admin_port=admin_port,
        allowed_origins=tuple(origin) if origin else options.allowed_origins,
        tls_cert_file=tls_cert_file,
        tls_key_file=tls_key_file,
    )
    print(render(options), end="")
