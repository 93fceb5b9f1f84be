"""The gateway's part of a trace: Envoy's OpenTelemetry tracer, sending its spans to the same OTLP collector as
the services, and `traceparent` passed on to them, so a browser's call is one trace from Envoy inward.

Made from the standard variables the services read (`OTEL_EXPORTER_OTLP_ENDPOINT`, `..._PROTOCOL`,
`OTEL_TRACES_SAMPLER[_ARG]`), so one setting traces the whole path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    Http2ProtocolOptions,
    HttpService,
    HttpUri,
    SocketAddress,
)
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints
from envoy_data_plane.envoy.config.trace.v3 import OpenTelemetryConfig, TracingHttp
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import HttpConnectionManagerTracing
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import HttpProtocolOptions as UpstreamHttpProtocolOptions
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import HttpProtocolOptionsExplicitHttpConfig
from envoy_data_plane.envoy.type.v3 import Percent
from envoy_data_plane.google.protobuf import Any as AnyMessage

CLUSTER = "opentelemetry_collector"
SERVICE_NAME = "devpynode-gateway"


@dataclass(frozen=True)
class TraceExport:
    """Where Envoy sends spans, and how many requests it samples when no caller decided."""

    host: str
    port: int
    grpc: bool  # OTLP over gRPC (port 4317 by convention); else OTLP/HTTP protobuf at `path`
    path: str = "/v1/traces"
    percent: float = 100.0

    @staticmethod
    def from_environment(environ: Mapping[str, str] | None = None) -> TraceExport | None:
        """The collector of the standard variables, or None when they ask for no traces (or name none)."""
        from pynode.core import tracing

        env = os.environ if environ is None else environ
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        if not tracing.wanted(env) or not endpoint:
            return None
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
        ).strip()
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        grpc = protocol == "grpc"
        port = parts.port or (4317 if grpc else 4318)
        # The signal-specific variable is the whole URL; the general one gets /v1/traces added (the OTLP spec).
        path = parts.path if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") else parts.path.rstrip("/") + "/v1/traces"
        return TraceExport(parts.hostname or "127.0.0.1", port, grpc, path or "/v1/traces", _percent(env))


def _percent(env: Mapping[str, str]) -> float:
    """Envoy's share of sampled requests from the OTel sampler variables (it is the root of a browser's trace)."""
    sampler = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if sampler in ("always_off", "parentbased_always_off"):
        return 0.0
    if sampler in ("traceidratio", "parentbased_traceidratio"):
        try:
            return max(0.0, min(1.0, float(env.get("OTEL_TRACES_SAMPLER_ARG", "1")))) * 100
        except ValueError:
            return 100.0
    return 100.0


def _any(message: object) -> AnyMessage:
    return AnyMessage.pack(message)  # type: ignore[arg-type]


def manager_tracing(export: TraceExport) -> HttpConnectionManagerTracing:
    """The connection manager's tracing block: the OpenTelemetry tracer on the collector cluster."""
    if export.grpc:
        config = OpenTelemetryConfig(
            grpc_service=GrpcService(envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name=CLUSTER)), service_name=SERVICE_NAME
        )
    else:
        uri = HttpUri(
            uri=f"http://{export.host}:{export.port}{export.path}", cluster=CLUSTER, timeout=timedelta(seconds=2)
        )
        config = OpenTelemetryConfig(http_service=HttpService(http_uri=uri), service_name=SERVICE_NAME)
    return HttpConnectionManagerTracing(
        random_sampling=Percent(value=export.percent),
        provider=TracingHttp(name="envoy.tracers.opentelemetry", typed_config=_any(config)),
        spawn_upstream_span=True,  # a client span per upstream call under the gateway's server span
    )


def collector_cluster(export: TraceExport) -> Cluster:
    """The collector as an Envoy cluster (HTTP/2 for OTLP/gRPC)."""
    address = Address(socket_address=SocketAddress(address=export.host, port_value=export.port))
    cluster = Cluster(
        name=CLUSTER,
        type=ClusterDiscoveryType.STRICT_DNS,
        connect_timeout=timedelta(seconds=2),
        load_assignment=ClusterLoadAssignment(
            cluster_name=CLUSTER,
            endpoints=[LocalityLbEndpoints(lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=address))])],
        ),
    )
    if export.grpc:
        cluster.typed_extension_protocol_options = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _any(
                UpstreamHttpProtocolOptions(
                    explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
                        http2_protocol_options=Http2ProtocolOptions()
                    )
                )
            )
        }
    return cluster
