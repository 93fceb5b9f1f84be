"""The one-process mesh: a grpc.aio server with the chosen services, health, reflection and metrics."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from devpynode.ai.v1 import ai_pb2, ai_pb2_grpc
from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc
from devpynode.chat.v1 import chat_pb2, chat_pb2_grpc
from devpynode.files.v1 import files_pb2, files_pb2_grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pynode.auth.servicer import AuthServicer, UserAdminServicer
from pynode.core import reflection
from pynode.core.access_log import AccessLog
from pynode.core.bootstrap import Platform
from pynode.core.contract import method_contracts
from pynode.core.edge import Edge
from pynode.core.metrics import ServerMetrics
from pynode.core.settings import SettingsError

log = logging.getLogger("pynode.server")


@dataclass(frozen=True)
class Registration:
    """One gRPC service to mount: its descriptor, its generated `add_*_to_server` and its servicer."""

    descriptor: ServiceDescriptor
    add_to_server: Callable[[Any, Any], None]
    servicer: Any


def _unbuilt(base: Any) -> Any:
    """The generated base servicer: every RPC answers UNIMPLEMENTED until its issue lands."""
    return base()


def _registrations(platform: Platform) -> list[Registration]:
    chosen = platform.settings.services()
    found: list[Registration] = []
    if "auth" in chosen:
        assert platform.auth is not None
        auth = platform.auth
        found.append(
            Registration(
                auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
                auth_pb2_grpc.add_AuthServiceServicer_to_server,
                AuthServicer(auth.service, auth.keyring),
            )
        )
        found.append(
            Registration(
                auth_pb2.DESCRIPTOR.services_by_name["UserAdminService"],
                auth_pb2_grpc.add_UserAdminServiceServicer_to_server,
                UserAdminServicer(auth.service),
            )
        )
    if "ai" in chosen:
        found.append(
            Registration(
                ai_pb2.DESCRIPTOR.services_by_name["AIRouterService"],
                ai_pb2_grpc.add_AIRouterServiceServicer_to_server,
                _unbuilt(ai_pb2_grpc.AIRouterServiceServicer),
            )
        )
    if "chat" in chosen:
        found.append(
            Registration(
                chat_pb2.DESCRIPTOR.services_by_name["ChatService"],
                chat_pb2_grpc.add_ChatServiceServicer_to_server,
                _unbuilt(chat_pb2_grpc.ChatServiceServicer),
            )
        )
    if "files" in chosen:
        found.append(
            Registration(
                files_pb2.DESCRIPTOR.services_by_name["FileService"],
                files_pb2_grpc.add_FileServiceServicer_to_server,
                _unbuilt(files_pb2_grpc.FileServiceServicer),
            )
        )
    return found


def _bind_problem(host: str, port: int) -> str:
    """Why `host:port` cannot be listened on, or "" when it can."""
    if port == 0:
        return ""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


class MeshServer:
    """Serves a Platform over gRPC until stopped; stopping is graceful."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        settings = platform.settings
        self.metrics = ServerMetrics()
        sessions = platform.sessions
        self.metrics.gauge(
            "devpynode_session_memory_live",
            "1 while session checks are answered from memory (the change feed is live); 0 while each reads the store.",
            lambda: float(sessions.remembering),
        )
        registrations = _registrations(platform)
        self.service_names = [r.descriptor.full_name for r in registrations]
        self.access_log = AccessLog()
        edge = Edge(
            method_contracts(r.descriptor for r in registrations),
            self.metrics,
            platform.authenticator,
            self.access_log,
            trust_forwarded_for=settings.trust_forwarded_for,
        )
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.max_metadata_size", 16 * 1024),
            # Two servers must never share a port by accident.
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ]
        self.server = grpc.aio.server(options=options)
        for registration in registrations:
            edge.mount(self.server, registration.add_to_server, registration.servicer)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable(
            self.server, [*self.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        )
        self.port = 0
        self.metrics_port = 0
        self.started = False

    async def start(self) -> int:
        """Bind, start and mark every service SERVING; returns the gRPC port."""
        settings = self.platform.settings
        address = f"{settings.grpc_host}:{settings.grpc_port}"
        problem = _bind_problem(settings.grpc_host, settings.grpc_port)
        if problem:  # checked first: grpc's own failure is a multi-line C-core log
            raise SettingsError(f"DEVPYNODE_GRPC_PORT: cannot listen on {address} ({problem})")
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise SettingsError(f"DEVPYNODE_GRPC_PORT: cannot listen on {address} ({exc})") from None
        if settings.metrics_port >= 0:
            try:
                self.metrics_port = self.metrics.serve_http(settings.grpc_host, settings.metrics_port)
            except OSError as exc:
                raise SettingsError(
                    f"DEVPYNODE_METRICS_PORT: cannot listen on {settings.grpc_host}:{settings.metrics_port} "
                    f"({exc.strerror}); choose another port or -1 to disable /metrics"
                ) from None
        await self.server.start()
        self.started = True
        self.access_log.start()
        for name in [*self.service_names, ""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving",
            extra={"grpc_port": self.port, "metrics_port": self.metrics_port, "services": self.service_names},
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first (so balancers drain), refuse new calls, give in-flight ones `grace` seconds."""
        grace = self.platform.settings.shutdown_grace_seconds if grace is None else grace
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await self.access_log.stop()
        self.metrics.close()
        await self.platform.close()
        if self.started:
            log.info("stopped")

    async def wait(self) -> None:
        """Until the server terminates."""
        await self.server.wait_for_termination()
