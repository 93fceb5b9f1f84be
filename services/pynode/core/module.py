"""How a service plugs into the platform: one `ServiceModule` per service package.

A module turns its own settings section and the shared infrastructure into servicers (with their
descriptors), health names and closers. The app lists the modules in one tuple; nothing else in the
platform names a service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from google.protobuf.descriptor import ServiceDescriptor

from pynode.core.commands import CommandHost
from pynode.core.db import Database
from pynode.core.events import EventFeed
from pynode.core.kv import KeyValueStore
from pynode.core.peers import Peers
from pynode.core.principal import Authenticator
from pynode.core.settings import MeshSettings, Section
from pynode.core.streams import EventStreams

Closer = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Registration:
    """One gRPC service to mount: its descriptor, its generated `add_*_to_server` and its servicer."""

    descriptor: ServiceDescriptor
    add_to_server: Callable[[Any, Any], None]
    servicer: Any


@dataclass(frozen=True)
class Gauge:
    """A metric read from the service when /metrics is scraped (the read must be thread-safe)."""

    name: str
    documentation: str
    read: Callable[[], float]


@dataclass
class ServiceParts:
    """What a module built: mounted by the server, closed (newest first) when the process stops."""

    registrations: list[Registration]
    closers: list[Closer] = field(default_factory=list)
    gauges: list[Gauge] = field(default_factory=list)
    # prometheus_client collectors (counters, histograms with labels) for /metrics.
    collectors: list[Any] = field(default_factory=list)
    # The token verification this process uses, when this module owns it (auth does).
    authenticator: Authenticator | None = None
    # The module's own wired object, for its command-line tools and tests (e.g. auth's components).
    component: Any = None
    # Backends in use, for the startup summary (never secrets): {"storage": "file:///..."}.
    backends: dict[str, str] = field(default_factory=dict)

    @property
    def health_names(self) -> list[str]:
        """The names `grpc.health.v1` reports for this module: one per gRPC service."""
        return [r.descriptor.full_name for r in self.registrations]


@dataclass(frozen=True)
class Infrastructure:
    """The shared resources every module may use; owned and closed by the app."""

    db: Database
    kv: KeyValueStore
    feed: EventFeed
    peers: Peers
    mesh: MeshSettings
    dev_mode: bool
    data_dir: Path
    streams: EventStreams


class ServiceModule(Protocol):
    """One service package's entry point (`pynode/<service>/module.py`)."""

    @property
    def name(self) -> str:
        """Short name used by `--only` and peer settings (`auth`, `files`, ...)."""

    @property
    def settings_class(self) -> type[Section]:
        """Its settings section."""

    @property
    def service_names(self) -> tuple[str, ...]:
        """Full names of the gRPC services it serves (known before it is built)."""

    @property
    def migrations(self) -> Path | None:
        """Its Alembic versions folder, or None when it has no tables."""

    def load_tables(self) -> None:
        """Import its table modules, so `Base.metadata` knows them (Alembic autogenerate, checks)."""

    async def build(self, settings: Any, infra: Infrastructure) -> ServiceParts:
        """Wire the service; on failure, release what it opened before raising."""


@runtime_checkable
class ModuleCommands(Protocol):
    """Optional on a ServiceModule: its own `devpynode` commands. A module without `cli_commands` has none;
    the CLI asks only when a command it does not know is run, so the commands' code is imported inside."""

    def cli_commands(self, host: CommandHost) -> Mapping[str, Callable[..., Any]]:
        """`"GROUP COMMAND"` (e.g. `"users create-admin"`) -> its Typer callback, wired to `host`."""
