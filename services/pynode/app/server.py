"""The mesh process: a grpc.aio server with the chosen services, health, reflection and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pynode.app import modules
from pynode.app.bootstrap import Platform
from pynode.core import reflection, tls
from pynode.core.access_log import AccessLog
from pynode.core.contract import method_contracts
from pynode.core.edge import Edge
from pynode.core.elsewhere import ServedElsewhere
from pynode.core.health import DrainingHealth
from pynode.core.local_calls import LocalCalls
from pynode.core.metrics import ServerMetrics
from pynode.core.settings import SettingsError

log = logging.getLogger("pynode.server")

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


def bind_problem(host: str, port: int, *, shared: bool = False) -> str:
    """Why `host:port` cannot be listened on, or "" when it can (`shared`: alongside other SO_REUSEPORT
    listeners, as `serve --workers` binds it)."""
    if port == 0:
        return ""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if shared:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


# A connection must finish its handshake (TLS, the HTTP/2 preface and SETTINGS) this soon, or it is closed: until
# then it holds a place under the connection cap (grpc's default is 120 s; issue 27 #19).
HANDSHAKE_SECONDS = 10.0

# File descriptors the process keeps for everything but client connections: the database pool,
# Redis, peers, log files, the metrics endpoint.
_RESERVED_DESCRIPTORS = 256


def connection_cap(wanted: int) -> int:
    """The connection limit to give grpc: `wanted`, but below the open-file limit, raised first to the
    hard limit (a flood must meet the cap, never EMFILE, which would refuse every new connection)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return max(1, min(wanted, soft - _RESERVED_DESCRIPTORS))


def listen_address(host: str, port: int) -> str:
    """`host:port` as grpc parses it (IPv6 literals in brackets)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _dialable(host: str) -> str:
    """How this process reaches its own listener (peers co-located in it dial it)."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - a bind address, read here only
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class MeshServer:
    """Serves a Platform over gRPC until stopped; stopping is graceful."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        server_settings = platform.settings.server
        self.metrics = ServerMetrics()
        for gauge in platform.gauges:
            self.metrics.gauge(gauge.name, gauge.documentation, gauge.read)
        for part in platform.parts.values():
            for collector in part.collectors:
                self.metrics.registry.register(collector)
        registrations = platform.registrations
        self.service_names = [r.descriptor.full_name for r in registrations]
        self.access_log = AccessLog()
        self.edge = edge = Edge(
            method_contracts(r.descriptor for r in registrations),
            self.metrics,
            platform.authenticator,
            self.access_log,
            trust_forwarded_for=server_settings.trust_forwarded_for,
        )
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", server_settings.max_message_bytes),
            ("grpc.max_send_message_length", server_settings.max_message_bytes),
            ("grpc.max_metadata_size", 16 * 1024),
            # Two servers must never share a port by accident; `serve --workers N` shares it on purpose.
            ("grpc.so_reuseport", 1 if server_settings.reuse_port else 0),
            # Keepalive enforcement: clients may ping every 10 s even without calls; more often is a
            # strike, and two strikes close the connection.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.http2.max_ping_strikes", 2),
            ("grpc.keepalive_time_ms", _ms(server_settings.keepalive_seconds)),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.max_connection_idle_ms", _ms(server_settings.connection_idle_seconds)),
            ("grpc.max_connection_age_ms", _ms(server_settings.connection_age_seconds)),
            ("grpc.max_connection_age_grace_ms", _ms(server_settings.connection_age_grace_seconds)),
            ("grpc.max_concurrent_streams", server_settings.max_concurrent_streams),
            ("grpc.max_allowed_incoming_connections", connection_cap(server_settings.max_connections)),
            ("grpc.server_handshake_timeout_ms", _ms(HANDSHAKE_SECONDS)),
        ]
        self.server = grpc.aio.server(options=options)
        for registration in registrations:
            edge.mount(
                self.server, registration.add_to_server, registration.servicer, parsers=registration.request_parsers
            )
        self.health = DrainingHealth()
        edge.mount(self.server, health_pb2_grpc.add_HealthServicer_to_server, self.health, open_to_all=True)
        edge.mount(
            self.server,
            reflection.add_to_server,
            reflection.servicer([*self.service_names, HEALTH_SERVICE]),
            open_to_all=True,
        )
        absent = [n for m in modules.MODULES if m.name not in platform.parts for n in m.service_names]
        self.server.add_generic_rpc_handlers((ServedElsewhere(absent, platform.parts),))
        self.port = 0
        self.metrics_port = 0
        self.started = False

    async def start(self) -> int:
        """Bind, start and mark every service SERVING; returns the gRPC port."""
        settings = self.platform.settings.server
        address = listen_address(settings.grpc_host, settings.grpc_port)
        problem = bind_problem(settings.grpc_host, settings.grpc_port, shared=settings.reuse_port)
        if problem:  # checked first: grpc's own failure is a multi-line C-core log
            raise SettingsError(f"DEVPYNODE_GRPC_PORT: cannot listen on {address} ({problem}){_port_hint(problem)}")
        mesh = self.platform.settings.mesh
        credentials = tls.server_credentials(mesh.tls_cert_file, mesh.tls_key_file, mesh.tls_client_ca_file)
        try:
            if credentials is not None:
                self.port = self.server.add_secure_port(address, credentials)
            else:
                self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise SettingsError(f"DEVPYNODE_GRPC_PORT: cannot listen on {address} ({exc})") from None
        if settings.metrics_port >= 0:
            try:
                self.metrics_port = self.metrics.serve_http(settings.grpc_host, settings.metrics_port)
            except OSError as exc:
                raise SettingsError(
                    f"DEVPYNODE_METRICS_PORT: cannot listen on {settings.grpc_host}:{settings.metrics_port} "
                    f"({exc.strerror}); choose another port, or -1 to disable /metrics"
                ) from None
        await self.server.start()
        self.started = True
        self.platform.infra.peers.local_address = f"{_dialable(settings.grpc_host)}:{self.port}"
        self.access_log.start()
        self.platform.infra.peers.local_calls = LocalCalls(self.edge.mounted)
        for name in [*self.service_names, ""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving",
            extra={"grpc_port": self.port, "metrics_port": self.metrics_port, "services": self.service_names},
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first (so balancers drain and Watch streams end), refuse new calls, give in-flight
        ones `grace` seconds, then cancel what is left."""
        settings = self.platform.settings.server
        grace = settings.shutdown_grace_seconds if grace is None else grace
        draining_since = time.monotonic()
        await self.health.enter_graceful_shutdown()
        # Work the grace period's end would cut is ended first, while every service (the AI router) still serves.
        for part in self.platform.parts.values():
            for stop in part.stoppers:
                try:
                    await stop()
                except Exception:
                    log.warning("error while stopping", exc_info=True)
        # NOT_SERVING on a listener that still answers, so probes see it before the port closes.
        await asyncio.sleep(max(0.0, min(settings.shutdown_drain_seconds, grace) - (time.monotonic() - draining_since)))
        # New in-process calls are refused from here as new gRPC calls are (they go to the closing listener).
        self.platform.infra.peers.local_calls = None
        await self.server.stop(grace)
        await self.access_log.stop()
        self.metrics.close()
        await self.platform.close()
        if self.started:
            log.info("stopped")

    async def wait(self) -> None:
        """Until the server terminates."""
        await self.server.wait_for_termination()


def _port_hint(problem: str) -> str:
    """What to do about a port another program holds (the likeliest cause on a laptop: a server already running)."""
    if "in use" not in problem:
        return ""
    return "; stop what holds it, or serve on another port: --grpc-port N (and DEVPYNODE_HTTP_PORT=N for the browsers')"
