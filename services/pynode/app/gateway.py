"""The browser gateway's Envoy configuration, generated from the contracts with typed Envoy objects.

Browsers speak grpc-web to Envoy, which speaks gRPC to the services: one route per service package (every RPC
of `devpynode.auth.v1` goes to the auth cluster, and so on), one HTTP/2 cluster per service, health-checked
with `grpc.health.v1`. The same generator serves every place Envoy runs (compose, Helm, the laptop's
`devpynode serve`); only addresses and TLS differ. `gateway/envoy.yaml` is its output for compose, checked in
and kept current by `scripts/generate` (and `scripts/test` fails when it is stale).

The settings below answer measured pitfalls (see the README's Deploy section): errors reach browsers only with
`grpc-status`, `grpc-message` and `grpc-status-details-bin` exposed; CORS is answered before anything asks for
a token; routes have no timeout (Envoy's default 15 s cuts token streams) and no `grpc_timeout_header_max`
(Envoy would reset the stream instead of letting the service end it with DEADLINE_EXCEEDED); the client
address is Envoy's view of it, which the services trust from their gateway only. Envoy's own x-forwarded-for
append (`use_remote_address`) writes the machine's own address, not 127.0.0.1, for a loopback peer (a browser on
the laptop), so it is skipped and the downstream address is appended by a header rule instead.

Routes are generated per RPC from the contracts' options, never by hand: RPCs only services call
(`ACCESS_SERVICE`, or `mesh_only` like IssueServiceToken) get no route, nor do client-streaming ones (a browser
cannot send them over grpc-web); any other `/devpynode.` path is answered 404 by Envoy itself.

Stalled requests (headers only, or a body that never ends) must not hold the services' capacity: the buffer
filter holds each request in Envoy until its one message is complete (browsers send exactly one), so only
whole requests reach a cluster; headers must arrive within REQUEST_HEADERS and the whole request within
REQUEST_WHOLE; unary answers end within UNARY_ANSWER, streams (tokens) have no limit; each cluster's circuit
breakers are set, not left at Envoy's 1,024 defaults; a connection carries at most STREAMS_PER_CONNECTION
calls and is closed after CONNECTION_IDLE without any.

Modules that serve plain HTTP of their own (`ServesHttp`: the OpenAI-compatible door) get an HTTP/1.1 cluster,
health-checked with a GET of their health path, whose idle connections Envoy closes before the module would, and
a route per path they name, with no route timeout (a generation streams as long as the model writes). Their
requests are buffered whole like the others (server-sent answers still stream: the filter holds requests only)
but for the paths they name as streamed (a file's bytes, bounded by the whole-request time all the same),
and Envoy's own 408 and 413 on their paths are in the module's clients' error shape (OpenAI's).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from envoy_data_plane.envoy.config.accesslog.v3 import (
    AccessLogFilter,
    AndFilter,
    ComparisonFilter,
    ComparisonFilterOp,
    HeaderFilter,
    OrFilter,
    StatusCodeFilter,
)
from envoy_data_plane.envoy.config.bootstrap.v3 import Admin, Bootstrap, BootstrapStaticResources
from envoy_data_plane.envoy.config.cluster.v3 import (
    CircuitBreakers,
    CircuitBreakersThresholds,
    Cluster,
    ClusterDiscoveryType,
    ClusterLbPolicy,
)
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    DataSource,
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
    HealthCheck,
    HealthCheckGrpcHealthCheck,
    HealthCheckHttpHealthCheck,
    Http1ProtocolOptions,
    Http2ProtocolOptions,
    HttpProtocolOptions,
    Pipe,
    RuntimeUInt32,
    SocketAddress,
    SubstitutionFormatString,
    TransportSocket,
)
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.overload.v3 import OverloadManager, ResourceMonitor
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    HeaderMatcher,
    Route,
    RouteAction,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.filters.http.buffer.v3 import Buffer, BufferPerRoute
from envoy_data_plane.envoy.extensions.filters.http.cors.v3 import Cors, CorsPolicy
from envoy_data_plane.envoy.extensions.filters.http.grpc_web.v3 import GrpcWeb
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerCodecType,
    HttpFilter,
    LocalReplyConfig,
    ResponseMapper,
)
from envoy_data_plane.envoy.extensions.resource_monitors.downstream_connections.v3 import (
    DownstreamConnectionsConfig,
)
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    CommonTlsContext,
    DownstreamTlsContext,
    TlsCertificate,
    TlsParameters,
    TlsParametersTlsProtocol,
    UpstreamTlsContext,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions as UpstreamHttpProtocolOptions,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import HttpProtocolOptionsExplicitHttpConfig
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.google.protobuf import Any as AnyMessage
from google.protobuf import descriptor_pool

from pynode.app import modules
from pynode.app.gateway_rest import ORIGINAL_PATH, query_refusals, transcoder
from pynode.app.gateway_tracing import CLUSTER as TRACE_CLUSTER
from pynode.app.gateway_tracing import TraceExport, collector_cluster, manager_tracing
from pynode.app.webfiles import HEADERS_SECONDS as WEB_HEADERS_SECONDS
from pynode.core.contract import MethodContract, method_contracts
from pynode.core.edge import GATEWAY_HEADER
from pynode.core.module import ServesHttp
from pynode.door.settings import DEFAULT_HEADERS_SECONDS

# The last three and the exposed ones after x-request-id: a file's bytes over plain HTTP (door/file_bytes.py).
ALLOWED_HEADERS = (
    "content-type,x-grpc-web,x-user-agent,grpc-timeout,authorization,x-request-id,range,if-range,if-none-match"
)
EXPOSED_HEADERS = (
    "grpc-status,grpc-message,grpc-status-details-bin,x-request-id,content-range,content-disposition,etag,accept-ranges"
)
STREAM_IDLE = timedelta(minutes=10)  # a slow model's first token may take minutes (cold loads)
MAX_CONNECTION = timedelta(hours=1)  # clients reconnect, and so spread over services that scaled out
BUFFER_BYTES = 4 * 1024 * 1024  # per connection: a 1 MiB upload part and its framing, with room
MAX_DOWNSTREAM_CONNECTIONS = 50_000
REQUEST_HEADERS = timedelta(seconds=10)  # a request's headers, from its connection's first byte
REQUEST_WHOLE = timedelta(seconds=60)  # a whole request (one message of at most 4 MiB), then its answer may stream
UNARY_ANSWER = timedelta(minutes=5)  # a unary answer (a scanned upload part is the slowest); streams: no limit
CONNECTION_IDLE = timedelta(minutes=5)  # a browser's connection with no call at all
STREAMS_PER_CONNECTION = 100  # HTTP/2 calls at once on one browser connection (the services' own figure)
# Per cluster (Envoy's defaults are 1,024 each): whole requests only reach a cluster, so these count real calls;
# open token streams are most of them.
CLUSTER_REQUESTS = 10_000
CLUSTER_PENDING = 2_000
CLUSTER_CONNECTIONS = 1_000
WEB_PORT = 8000  # `devpynode gateway web`: compose's `web` service, and the Helm gateway pod's sidecar
# The HTTP listener of a `ServesHttp` module in compose and Helm (DEVPYNODE_DOOR_PORT there).
HTTP_MODULE_PORT = 8090
# Envoy's idle HTTP/1.1 connections to such a listener and to the web app's files: below their own idle bounds
# (DEVPYNODE_DOOR_HEADERS_SECONDS, webfiles.HEADERS_SECONDS), so Envoy, not the listener, closes an idle one.
HTTP_UPSTREAM_IDLE = timedelta(seconds=min(DEFAULT_HEADERS_SECONDS, WEB_HEADERS_SECONDS) * 2 / 3)


@dataclass(frozen=True)
class Upstream:
    """Where one service answers: a host (a name resolved by DNS, or an address) and a port."""

    host: str
    port: int


@dataclass(frozen=True)
class UpstreamTls:
    """How Envoy speaks TLS to services whose gRPC port does (DEVPYNODE_TLS_CERT_FILE set on them)."""

    ca_file: str = ""  # verify the services against this CA; empty: no verification (loopback only)
    cert_file: str = ""  # a client certificate, for services that require one (mTLS)
    key_file: str = ""


@dataclass(frozen=True)
class GatewayOptions:
    """What differs between the places the gateway runs."""

    upstreams: dict[str, Upstream]  # by service module name (auth, ai, files, chat)
    listen_host: str = "0.0.0.0"  # noqa: S104 - a gateway listens for browsers
    listen_port: int = 8080
    admin_port: int = 9901  # on 127.0.0.1 only: stats and readiness for the process's own probes
    # Instead of the port: Envoy's admin on a Unix socket of this mode (owner-only). On a shared machine any local
    # user reaches a loopback port, and the admin interface dumps the config (the gateway secret), raises log
    # levels until headers (tokens) are logged, and stops Envoy; in a pod only its own containers share loopback.
    admin_socket: str = ""
    allowed_origins: tuple[str, ...] = ("http://localhost:8080", "http://127.0.0.1:8080")
    tls_cert_file: str = ""
    tls_key_file: str = ""
    web: Upstream | None = None  # the web app's files (HTTP/1.1), served on every path the services do not own
    upstream_tls: UpstreamTls | None = None
    # Added to every call Envoy forwards (a client's own value is replaced): `serve` trusts x-forwarded-for from
    # calls that carry it, not from every loopback peer. Empty: no header (compose and Helm).
    secret: str = ""
    traces: TraceExport | None = None  # Envoy's spans and traceparent to the services (OTEL_* variables)


# Envoy's own answers on REST paths, by HTTP status: the google.rpc.Status a REST client gets instead. The
# messages are fixed: Envoy's own text echoes fragments of the request, and its JSON formatter cannot write a
# number (a literal 3 came out as "3.0"), so the body is written whole here.
_REST_LOCAL_ANSWERS = {
    400: '{"code":3,"message":"the request is not valid JSON for this method, names a field or query '
    "parameter the method does not have, or names in its query a field the path binds or one it already gave "
    '(see /openapi.json)"}',
    413: '{"code":8,"message":"the request body is larger than the gateway accepts"}',
}


# The same for paths of a `ServesHttp` module (the OpenAI-compatible door), in OpenAI's error shape, which its
# clients turn into their exception classes.
_HTTP_MODULE_LOCAL_ANSWERS = {
    408: '{"error":{"message":"the request did not arrive whole within the gateway\'s time; send it promptly",'
    '"type":"invalid_request_error","param":null,"code":"request_timeout"}}',
    413: '{"error":{"message":"the request body is larger than the gateway accepts","type":"invalid_request_error",'
    '"param":null,"code":"request_too_large"}}',
}


def _on_status(status: int, paths: list[str], key: str, headers: tuple[str, ...] = (":path",)) -> AccessLogFilter:
    """Envoy's own answer of `status` on a path starting with one of `paths`, as any of `headers` says it."""
    on_path = [
        AccessLogFilter(
            header_filter=HeaderFilter(header=HeaderMatcher(name=header, string_match=StringMatcher(prefix=p)))
        )
        for p in paths
        for header in headers
    ]
    return AccessLogFilter(
        and_filter=AndFilter(
            filters=[
                AccessLogFilter(
                    status_code_filter=StatusCodeFilter(
                        comparison=ComparisonFilter(
                            op=ComparisonFilterOp.EQ,
                            value=RuntimeUInt32(default_value=status, runtime_key=f"{key}_{status}"),
                        )
                    )
                ),
                on_path[0] if len(on_path) == 1 else AccessLogFilter(or_filter=OrFilter(filters=on_path)),
            ]
        )
    )


def _mapper(
    status: int, paths: list[str], body: str, key: str, headers: tuple[str, ...] = (":path",)
) -> ResponseMapper:
    return ResponseMapper(
        filter=_on_status(status, paths, key, headers),
        body_format_override=SubstitutionFormatString(
            text_format_source=DataSource(inline_string=body + "\n"), content_type="application/json"
        ),
    )


def _local_replies(http_paths: list[str]) -> LocalReplyConfig:
    """REST clients get errors as JSON `google.rpc.Status` everywhere: the services' errors are transcoded, but
    what Envoy answers itself (the transcoder's "Expected : between key:value pair", an unknown query parameter,
    a body over the buffer's limit) was plain text, with fragments of the request in it. The paths of HTTP
    modules (under /v1/ too) are matched first, and answered in their clients' own shape. A REST request is known
    by its path, `/v1/...`, or, once the transcoder has rewritten `:path` to the RPC's (a body it cannot parse and
    a body over the limit are found after that), by the original path it keeps."""
    mappers = (
        [_mapper(status, http_paths, body, "http_local") for status, body in _HTTP_MODULE_LOCAL_ANSWERS.items()]
        if http_paths
        else []
    )
    mappers += [
        _mapper(status, ["/v1/"], body, "rest_local", (":path", ORIGINAL_PATH))
        for status, body in _REST_LOCAL_ANSWERS.items()
    ]
    return LocalReplyConfig(mappers=mappers)


def _admin_address(options: GatewayOptions) -> Address:
    if options.admin_socket:
        return Address(pipe=Pipe(path=options.admin_socket, mode=0o600))
    return Address(socket_address=SocketAddress(address="127.0.0.1", port_value=options.admin_port))


def service_packages() -> dict[str, str]:
    """Each gRPC service module's proto package (`auth` -> `devpynode.auth.v1`), read from its descriptors."""
    found: dict[str, str] = {}
    for module in modules.MODULES:
        if not module.service_names:
            continue  # an HTTP-only module (see http_modules)
        packages = {name.rsplit(".", 1)[0] for name in module.service_names}
        assert len(packages) == 1, f"{module.name} serves more than one package: {packages}"
        found[module.name] = packages.pop()
    return found


def http_modules() -> dict[str, ServesHttp]:
    """The modules with an HTTP listener of their own, by name."""
    return {m.name: m for m in modules.MODULES if isinstance(m, ServesHttp)}


def gateway_modules() -> list[str]:
    """Every module the gateway routes to: the gRPC services, then the HTTP ones."""
    return [*service_packages(), *(name for name in http_modules() if name not in service_packages())]


def _any(message: Any) -> AnyMessage:
    return AnyMessage.pack(message)


def _endpoint(cluster: str, upstream: Upstream) -> ClusterLoadAssignment:
    """A cluster's one address (a DNS name resolves to every pod behind it)."""
    address = Address(socket_address=SocketAddress(address=upstream.host, port_value=upstream.port))
    return ClusterLoadAssignment(
        cluster_name=cluster,
        endpoints=[LocalityLbEndpoints(lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=address))])],
    )


def _upstream_tls(tls: UpstreamTls) -> TransportSocket:
    context = CommonTlsContext(alpn_protocols=["h2"])  # grpcio refuses TLS connections that do not offer h2
    if tls.cert_file:
        context.tls_certificates = [
            TlsCertificate(
                certificate_chain=DataSource(filename=tls.cert_file), private_key=DataSource(filename=tls.key_file)
            )
        ]
    if tls.ca_file:
        context.validation_context = CertificateValidationContext(trusted_ca=DataSource(filename=tls.ca_file))
    return TransportSocket(
        name="envoy.transport_sockets.tls", typed_config=_any(UpstreamTlsContext(common_tls_context=context))
    )


def _breakers() -> CircuitBreakers:
    return CircuitBreakers(
        thresholds=[
            CircuitBreakersThresholds(
                max_connections=CLUSTER_CONNECTIONS,
                max_pending_requests=CLUSTER_PENDING,
                max_requests=CLUSTER_REQUESTS,
                max_retries=3,
            )
        ]
    )


def _health_check(**kind: Any) -> HealthCheck:
    """Every 5 s, 1 s to answer; two misses take an endpoint out, one answer brings it back."""
    return HealthCheck(
        timeout=timedelta(seconds=1), interval=timedelta(seconds=5), unhealthy_threshold=2, healthy_threshold=1, **kind
    )


def _cluster(name: str, package: str, upstream: Upstream, tls: UpstreamTls | None = None) -> Cluster:
    health_service = _health_service(package)
    return Cluster(
        name=name,
        # Every address the name resolves to (a headless Service's pods): requests are balanced per call.
        type=ClusterDiscoveryType.STRICT_DNS,
        lb_policy=ClusterLbPolicy.ROUND_ROBIN,
        connect_timeout=timedelta(seconds=2),
        per_connection_buffer_limit_bytes=BUFFER_BYTES,
        typed_extension_protocol_options={
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _any(
                UpstreamHttpProtocolOptions(
                    explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
                        http2_protocol_options=Http2ProtocolOptions()
                    ),
                    common_http_protocol_options=HttpProtocolOptions(max_connection_duration=MAX_CONNECTION),
                )
            )
        },
        load_assignment=_endpoint(name, upstream),
        circuit_breakers=_breakers(),
        health_checks=[_health_check(grpc_health_check=HealthCheckGrpcHealthCheck(service_name=health_service))],
        transport_socket=_upstream_tls(tls) if tls is not None else None,
    )


def _health_service(package: str) -> str:
    """The first gRPC service of the package: its health status is the module's."""
    for module in modules.MODULES:
        for name in module.service_names:
            if name.startswith(package + "."):
                return name
    raise ValueError(package)


def _http_cluster(name: str, upstream: Upstream, health_path: str) -> Cluster:
    """An HTTP/1.1 cluster for a module's own listener, health-checked with a GET of `health_path`. Envoy drops
    its idle connections to it after HTTP_UPSTREAM_IDLE, before the listener's own idle bound closes them, so a
    request is never sent down a connection the listener is closing."""
    return Cluster(
        name=name,
        type=ClusterDiscoveryType.STRICT_DNS,
        lb_policy=ClusterLbPolicy.ROUND_ROBIN,
        connect_timeout=timedelta(seconds=2),
        per_connection_buffer_limit_bytes=BUFFER_BYTES,
        typed_extension_protocol_options=_http1_idle(),
        load_assignment=_endpoint(name, upstream),
        circuit_breakers=_breakers(),
        health_checks=[_health_check(http_health_check=HealthCheckHttpHealthCheck(path=health_path))],
    )


def _http_path_match(path: str) -> RouteMatch:
    return RouteMatch(prefix=path) if path.endswith("/") else RouteMatch(path=path)


def _http_routes(names: list[str]) -> list[Route]:
    """The paths each HTTP module names, to its cluster, with no route timeout (answers stream as long as the
    model writes). Requests are buffered whole like every other route: the buffer filter holds requests only,
    so server-sent answers still stream, and a body that never ends stays in Envoy (408 after REQUEST_WHOLE)
    instead of holding one of the cluster's HTTP/1.1 connections for as long as its sender likes. The paths a
    module names as streamed (`http_streamed_paths`: a file's bytes, larger than any buffer) pass unbuffered,
    still within the whole-request time."""
    routes = []
    unbuffered = {"envoy.filters.http.buffer": _any(BufferPerRoute(disabled=True))}
    for name, module in http_modules().items():
        if name not in names:
            continue
        streamed = set(getattr(module, "http_streamed_paths", ()))
        for path in module.http_paths:
            routes.append(
                Route(
                    match=_http_path_match(path),
                    route=RouteAction(cluster=name, timeout=timedelta(0)),
                    typed_per_filter_config=unbuffered if path in streamed else {},
                )
            )
    return routes


def _http1_idle() -> dict[str, AnyMessage]:
    """HTTP/1.1 upstream connections Envoy closes after HTTP_UPSTREAM_IDLE without a request: before the
    listeners' own idle bound, so a request never goes down a connection the listener is closing."""
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _any(
            UpstreamHttpProtocolOptions(
                explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
                    http_protocol_options=Http1ProtocolOptions()
                ),
                common_http_protocol_options=HttpProtocolOptions(
                    idle_timeout=HTTP_UPSTREAM_IDLE, max_connection_duration=MAX_CONNECTION
                ),
            )
        )
    }


def _web_cluster(upstream: Upstream) -> Cluster:
    return Cluster(
        name="web",
        type=ClusterDiscoveryType.STRICT_DNS,
        connect_timeout=timedelta(seconds=2),
        typed_extension_protocol_options=_http1_idle(),
        load_assignment=_endpoint("web", upstream),
    )


def browser_methods() -> list[MethodContract]:
    """The RPCs browsers may reach, from the contracts: not mesh-only ones, not client streams."""
    services = []
    for module in modules.MODULES:
        for name in module.service_names:
            services.append(descriptor_pool.Default().FindServiceByName(name))
    contracts = method_contracts(services)
    return [c for _, c in sorted(contracts.items()) if not c.mesh_only and not c.client_streaming]


def _routes(clusters: dict[str, str], web: bool = False, http: list[str] | None = None) -> list[Route]:
    routes = _http_routes(http or [])
    pool = descriptor_pool.Default()
    routed = [
        pool.FindMethodByName(c.full_method.lstrip("/").replace("/", "."))
        for c in browser_methods()
        if c.full_method.lstrip("/").split("/")[0].rsplit(".", 1)[0] in clusters
    ]
    routes += query_refusals(routed)  # a REST query that would override its path: 400 before any cluster
    for contract in browser_methods():
        package = contract.full_method.lstrip("/").split("/")[0].rsplit(".", 1)[0]
        if package not in clusters:
            continue
        routes.append(
            Route(
                match=RouteMatch(path=contract.full_method),
                # A stream lasts as long as the model writes (Envoy's default would cut it at 15 s); a unary
                # answer that takes longer than UNARY_ANSWER is stuck.
                route=RouteAction(
                    cluster=clusters[package],
                    timeout=timedelta(0) if contract.server_streaming else UNARY_ANSWER,
                ),
            )
        )
    # Every other RPC path (mesh-only, unknown) ends here, never at the web app's files.
    routes.append(Route(match=RouteMatch(prefix="/devpynode."), direct_response=DirectResponseAction(status=404)))
    if web:
        routes.append(Route(match=RouteMatch(prefix="/"), route=RouteAction(cluster="web")))
    return routes


def _cors(origins: tuple[str, ...]) -> CorsPolicy:
    return CorsPolicy(
        allow_origin_string_match=[StringMatcher(exact=origin) for origin in origins],
        allow_methods="GET,POST,PATCH,PUT,DELETE,OPTIONS",  # grpc-web posts; REST uses the rest
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        max_age="86400",
        allow_credentials=False,
    )


def _forwarded_headers(secret: str) -> list[HeaderValueOption]:
    """The browser's address as the last x-forwarded-for hop, and the gateway's secret when it has one."""
    client = HeaderValueOption(
        header=HeaderValue(key="x-forwarded-for", value="%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
        append_action=HeaderValueOptionHeaderAppendAction.APPEND_IF_EXISTS_OR_ADD,
    )
    if not secret:
        return [client]
    return [
        client,
        HeaderValueOption(
            header=HeaderValue(key=GATEWAY_HEADER, value=secret),
            append_action=HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
        ),
    ]


def _routed_services(options: GatewayOptions) -> list[str]:
    return [name for module in modules.MODULES if module.name in options.upstreams for name in module.service_names]


def bootstrap(options: GatewayOptions) -> Bootstrap:
    """The whole Envoy configuration as typed objects."""
    packages = service_packages()
    clusters = {packages[name]: name for name in options.upstreams if name in packages}
    served_http = http_modules()
    http = [name for name in options.upstreams if name in served_http and name not in packages]
    manager = HttpConnectionManager(
        codec_type=HttpConnectionManagerCodecType.AUTO,
        stat_prefix="grpc_web",
        use_remote_address=True,  # the services see the browser's address, not Envoy's
        skip_xff_append=True,  # appended by _forwarded_headers: Envoy's own gives a loopback peer the host's address
        stream_idle_timeout=STREAM_IDLE,
        request_headers_timeout=REQUEST_HEADERS,
        request_timeout=REQUEST_WHOLE,  # disarmed once the request is whole: streamed answers go on
        max_request_headers_kb=64,
        common_http_protocol_options=HttpProtocolOptions(
            max_connection_duration=MAX_CONNECTION, idle_timeout=CONNECTION_IDLE
        ),
        http2_protocol_options=Http2ProtocolOptions(max_concurrent_streams=STREAMS_PER_CONNECTION),
        local_reply_config=_local_replies(
            list(dict.fromkeys(path.rstrip("/") for name in http for path in served_http[name].http_paths))
        ),
        route_config=RouteConfiguration(
            name="services",
            virtual_hosts=[
                VirtualHost(
                    name="services",
                    domains=["*"],
                    routes=_routes(clusters, web=options.web is not None, http=http),
                    typed_per_filter_config={"envoy.filters.http.cors": _any(_cors(options.allowed_origins))},
                )
            ],
            request_headers_to_add=_forwarded_headers(options.secret),
        ),
        http_filters=[
            # CORS first: a preflight carries no token and is answered here.
            HttpFilter(name="envoy.filters.http.cors", typed_config=_any(Cors())),
            # REST/JSON first turned into gRPC (a grpc-web or gRPC request passes through untouched).
            HttpFilter(
                name="envoy.filters.http.grpc_json_transcoder",
                typed_config=_any(transcoder(_routed_services(options))),
            ),
            HttpFilter(name="envoy.filters.http.grpc_web", typed_config=_any(GrpcWeb())),
            # After grpc_web (which decodes grpc-web-text): the whole request, decoded, before any upstream.
            HttpFilter(name="envoy.filters.http.buffer", typed_config=_any(Buffer(max_request_bytes=BUFFER_BYTES))),
            HttpFilter(name="envoy.filters.http.router", typed_config=_any(Router())),
        ],
        tracing=manager_tracing(options.traces) if options.traces is not None else None,
    )
    chain = FilterChain(
        filters=[Filter(name="envoy.filters.network.http_connection_manager", typed_config=_any(manager))]
    )
    if options.tls_cert_file:
        chain.transport_socket = TransportSocket(
            name="envoy.transport_sockets.tls",
            typed_config=_any(
                DownstreamTlsContext(
                    common_tls_context=CommonTlsContext(
                        tls_params=TlsParameters(tls_minimum_protocol_version=TlsParametersTlsProtocol.TLSv1_3),
                        tls_certificates=[
                            TlsCertificate(
                                certificate_chain=DataSource(filename=options.tls_cert_file),
                                private_key=DataSource(filename=options.tls_key_file),
                            )
                        ],
                        alpn_protocols=["h2", "http/1.1"],
                    )
                )
            ),
        )
    listener = Listener(
        name="browsers",
        address=Address(socket_address=SocketAddress(address=options.listen_host, port_value=options.listen_port)),
        per_connection_buffer_limit_bytes=BUFFER_BYTES,
        filter_chains=[chain],
    )
    return Bootstrap(
        admin=Admin(address=_admin_address(options)),
        static_resources=BootstrapStaticResources(
            listeners=[listener],
            clusters=[
                _cluster(name, packages[name], options.upstreams[name], options.upstream_tls)
                for name in sorted(options.upstreams)
                if name in packages
            ]
            + [_http_cluster(name, options.upstreams[name], served_http[name].health_path) for name in sorted(http)]
            + ([_web_cluster(options.web)] if options.web is not None else [])
            + ([collector_cluster(options.traces)] if options.traces is not None else []),
        ),
        overload_manager=OverloadManager(
            resource_monitors=[
                ResourceMonitor(
                    name="envoy.resource_monitors.global_downstream_max_connections",
                    typed_config=_any(
                        DownstreamConnectionsConfig(max_active_downstream_connections=MAX_DOWNSTREAM_CONNECTIONS)
                    ),
                )
            ]
        ),
    )


def render(options: GatewayOptions) -> str:
    """The configuration as Envoy's YAML."""
    import yaml

    header = (
        "# Generated by `scripts/generate` from the contracts (pynode/app/gateway.py): do not edit.\n"
        "# Browsers speak grpc-web here; Envoy speaks gRPC to the services.\n"
    )
    return header + yaml.safe_dump(bootstrap(options).to_dict(), sort_keys=False, width=120)


COMPOSE_COLLECTOR = TraceExport("phoenix", 4317, grpc=True)  # compose's trace store (`--profile tracing`)


def compose_options(traces: TraceExport | None = None) -> GatewayOptions:
    """The checked-in configuration: docker compose, one container per service on port 50051 (`traces`: Envoy's
    tracer, for gateway/envoy-traced.yaml)."""
    return GatewayOptions(
        upstreams={
            **{name: Upstream(name, 50051) for name in service_packages()},
            **{name: Upstream(name, HTTP_MODULE_PORT) for name in http_modules()},
        },
        web=Upstream("web", WEB_PORT),
        traces=traces,
    )


HELM_HOST = '{{ include "dev-pynode.fullname" . }}-%s'
HELM_TLS_DIR = "/etc/envoy/tls"


# Stand-ins in the Helm template's tracing blocks, replaced by the chart's helpers (templates/_helpers.tpl).
_HELM_OTLP = {
    "__OTLP_HOST__": '{{ include "dev-pynode.otlpHost" . }}',
    "65001": '{{ include "dev-pynode.otlpPort" . }}',
    "/__OTLP_PATH__": '{{ include "dev-pynode.otlpPath" . }}',
    "12.345": '{{ include "dev-pynode.tracePercent" . }}',
}


def _block(lines: list[str], first: int) -> int:
    """The end (exclusive) of the YAML block that starts at `first` (a key, or a list item): its deeper lines."""
    line = lines[first]
    content = len(line) - len(line.lstrip(" -"))  # the column of its first key
    limit = content if line.lstrip().startswith("- ") else content + 1
    end = first + 1
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) >= limit):
        end += 1
    return end


def _tracing_blocks(options: GatewayOptions, grpc: bool) -> tuple[list[str], list[str], list[str]]:
    """The rendered configuration with Envoy's tracer (placeholders for the collector), and its two blocks:
    the connection manager's `tracing` and the collector's cluster."""
    traced = replace(options, traces=TraceExport("__OTLP_HOST__", 65001, grpc, "/__OTLP_PATH__", 12.345))
    lines = render(traced).splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "tracing:")
    manager = lines[start : _block(lines, start)]
    first = next(i for i, line in enumerate(lines) if line.strip() == f"- name: {TRACE_CLUSTER}")
    cluster = lines[first : _block(lines, first)]
    rest = lines[:start] + lines[start + len(manager) : first] + lines[first + len(cluster) :]
    return rest, manager, cluster


def _helm_tracing(options: GatewayOptions) -> list[str]:
    """The configuration with Envoy's tracer between Helm conditionals: on when `.Values.tracing.endpoint` is
    set, OTLP/gRPC or OTLP/HTTP as `.Values.tracing.protocol` says, the collector's address from that URL."""
    plain, grpc_manager, grpc_cluster = _tracing_blocks(options, grpc=True)
    _, http_manager, http_cluster = _tracing_blocks(options, grpc=False)

    def choose(grpc_lines: list[str], http_lines: list[str]) -> list[str]:
        def helm(lines: list[str]) -> list[str]:
            out = []
            for line in lines:
                for stand_in, template in _HELM_OTLP.items():
                    line = line.replace(stand_in, template)
                out.append(line)
            return out

        return [
            "{{- if .Values.tracing.endpoint }}",
            '{{- if eq .Values.tracing.protocol "grpc" }}',
            *helm(grpc_lines),
            "{{- else }}",
            *helm(http_lines),
            "{{- end }}",
            "{{- end }}",
        ]

    untraced = render(options).splitlines()
    assert plain == untraced, "the tracer's blocks are all the tracing adds"
    # Where the blocks go in the untraced configuration: the manager's after its filters, the cluster last.
    traced = render(replace(options, traces=TraceExport("__OTLP_HOST__", 65001, True))).splitlines()
    manager_at = next(i for i, line in enumerate(traced) if line.strip() == "tracing:")
    cluster_at = next(i for i, line in enumerate(traced) if line.strip() == f"- name: {TRACE_CLUSTER}")
    cluster_at -= len(grpc_manager)  # positions in the untraced lines
    return (
        untraced[:manager_at]
        + choose(grpc_manager, http_manager)
        + untraced[manager_at:cluster_at]
        + choose(grpc_cluster, http_cluster)
        + untraced[cluster_at:]
    )


def helm_template(*, tls: bool) -> str:
    """The configuration as a Helm template (charts/dev-pynode/files/): each upstream is the release's headless
    Service of that service, the web app's files come from the pod's own `web` container, the allowed
    origins come from `.Values.envoy.allowedOrigins`, and Envoy's tracer from `.Values.tracing`."""
    options = GatewayOptions(
        upstreams={
            **{name: Upstream(HELM_HOST % name, 50051) for name in service_packages()},
            **{name: Upstream(HELM_HOST % name, HTTP_MODULE_PORT) for name in http_modules()},
        },
        allowed_origins=("__ORIGINS__",),
        web=Upstream("127.0.0.1", WEB_PORT),  # the gateway pod's `web` container
        tls_cert_file=f"{HELM_TLS_DIR}/tls.crt" if tls else "",
        tls_key_file=f"{HELM_TLS_DIR}/tls.key" if tls else "",
    )
    lines = [
        line.replace("`scripts/generate`", "`scripts/generate` for the Helm chart") for line in _helm_tracing(options)
    ]
    out = []
    for line in lines:
        if line.strip() == "- exact: __ORIGINS__":
            indent = line[: len(line) - len(line.lstrip())]
            out += [
                "{{- range .Values.envoy.allowedOrigins }}",
                f"{indent}- exact: {{{{ . | quote }}}}",
                "{{- end }}",
            ]
        else:
            out.append(line)
    return "\n".join(out) + "\n"
