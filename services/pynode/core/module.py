"""How a service plugs into the platform: one `ServiceModule` per service package.

A module turns its own settings section and the shared infrastructure into servicers (with their
descriptors), health names and closers. The app lists the modules in one tuple; nothing else in the
platform names a service: its peer address setting (`DEVPYNODE_<NAME>_ADDRESS`), its migrations and
the optional hooks below are all found through the module.

Optional hooks, each a protocol of its own that a module implements or not (the app asks with
`isinstance`): `ChecksProductionSafety` (settings refused outside dev mode), `BacksUp` (data kept
outside the database, for `devpynode backup`) and `ServesHttp` (an HTTP listener of its own that the
gateway routes paths to, like the OpenAI-compatible door).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # names for annotations only: every `<svc>.module` imports this file, and the app and the CLI
    # import every `<svc>.module`, so the database, gRPC and settings machinery stay unloaded until a build needs them
    from google.protobuf.descriptor import ServiceDescriptor

    from pynode.core.commands import CommandHost
    from pynode.core.db import Database
    from pynode.core.events import EventFeed
    from pynode.core.executors import Executors
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
    # Request deserializers of the service's own for some methods (by name), in place of the generated ones:
    # `core.wire` parsers that read a common message shape without copying it.
    request_parsers: Mapping[str, Callable[[bytes], Any]] = field(default_factory=dict)


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
    # Run first when the process stops, health already NOT_SERVING and the listener still serving: end the work
    # the grace period's end would cut (chat's running answers, which stream from the AI router).
    stoppers: list[Closer] = field(default_factory=list)
    gauges: list[Gauge] = field(default_factory=list)
    # prometheus_client collectors (counters, histograms with labels) for /metrics.
    collectors: list[Any] = field(default_factory=list)
    # The token verification this process uses, when this module issues the tokens (see core/identity.py).
    authenticator: Authenticator | None = None
    # The module's own wired object, for its command-line tools and tests (e.g. auth's components).
    component: Any = None
    # Backends in use, for the startup summary (never secrets): {"storage": "file:///..."}.
    backends: dict[str, str] = field(default_factory=dict)
    # The port of the plain HTTP listener a `ServesHttp` module opened (the laptop gateway routes to it).
    http_port: int | None = None

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
    # Named bounded thread pools for blocking work: `infra.executors.pool("bcrypt", 2).run(...)`.
    executors: Executors


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


@runtime_checkable
class ServesHttp(Protocol):
    """Optional hook: the module serves plain HTTP (HTTP/1.1) on a listener of its own, beside gRPC; the gateway
    sends `http_paths` there (`ServiceParts.http_port` in this process, `DEVPYNODE_<NAME>_ADDRESS` elsewhere) and
    health-checks it with a GET of `health_path`."""

    @property
    def http_paths(self) -> tuple[str, ...]:
        """Exact paths, and prefixes ending in `/`, that the gateway routes to the listener."""

    @property
    def health_path(self) -> str:
        """A path answering 200 while the listener serves (no credentials)."""


@runtime_checkable
class ChecksProductionSafety(Protocol):
    """Optional hook: settings of this module that are unsafe outside dev mode (auth's generated keys)."""

    def check_production_safety(self, settings: Any) -> None:
        """Raise `SettingsError` (naming the variable) when `settings` must not be served with dev mode off."""


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why."""


class BackupSource(Protocol):
    """A module's stored objects as backups see them: keys in, bytes out (files' local or S3 storage)."""

    @property
    def where(self) -> str:
        """Where the objects live, for the manifest (no secrets)."""

    def stored_keys(self) -> Iterator[str]:
        """Every key to back up."""

    def fetch(self, key: str, target: Path) -> None:
        """Copy one object into a local file."""

    def store(self, key: str, source: Path) -> None:
        """Put one object back from a local file."""

    def close(self) -> None:
        """Release its clients."""


class BackupLocation(Protocol):
    """A remote home for backups (e.g. `s3://BUCKET/PREFIX`), staged through a local directory."""

    def upload(self, staged: Path) -> None:
        """Copy a staged backup there; refuse a location that already holds one."""

    def download(self, staged: Path) -> None:
        """Copy the backup found there into `staged`."""


@runtime_checkable
class BacksUp(Protocol):
    """Optional hook: a module with data outside the database; `devpynode backup` takes and restores it."""

    @property
    def backup_folder(self) -> str:
        """The backup's folder for its objects (`objects` for files): unique among modules."""

    def backup_source(self, settings: Any, data_dir: Path) -> BackupSource:
        """Its stored objects, opened from its settings."""

    def backup_location(self, settings: Any, url: str) -> BackupLocation | None:
        """A remote backup home it can reach with its own settings (a URL scheme it speaks), else None."""
