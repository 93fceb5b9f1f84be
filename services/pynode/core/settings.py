"""Settings kernel: the section base class, the shared sections, and the checks of URLs and addresses.

Every setting is a `DEVPYNODE_<NAME>` environment variable. Each service declares its own section
(`pynode/<service>/settings.py`); the app composes them in one root (`pynode/app/settings.py`) and hands
each service its own section only. Nothing here is created at import time.
"""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SERVICE_SECRET = "dev-service-secret-not-for-production"  # noqa: S105 - refused outside dev mode
MIN_SERVICE_SECRET_CHARS = 32


class SettingsError(ValueError):
    """A setting is malformed or unsafe; the message starts with the variable's name."""


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    return f"DEVPYNODE_{field.upper()}"


class Section(BaseSettings):
    """Base of every settings section: fields read from `DEVPYNODE_<FIELD>`, unknown variables ignored."""

    model_config = SettingsConfigDict(env_prefix="DEVPYNODE_", extra="ignore", frozen=True)


def check_address(value: str) -> str:
    """`host:port` (IPv6 in brackets), or empty; the message names the variable."""
    value = value.strip()
    if not value:
        return ""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port (for example 127.0.0.1:50051)")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{value!r}: {host!r} is not an IPv6 address") from None
    return value


def check_url(value: str, schemes: tuple[str, ...], example: str) -> str:
    """A URL with one of `schemes`, or empty."""
    value = value.strip()
    if not value:
        return ""
    scheme = urlparse(value).scheme
    if scheme not in schemes:
        raise ValueError(f"unsupported scheme {scheme!r} in {value!r}; use {example}")
    return value


class ServerSettings(Section):
    """The process: what it listens on, where embedded data lives, how it logs and stops."""

    dev_mode: bool = Field(
        True,
        description="Development mode: allows generated signing keys and the default service secret. "
        "Set to false in production.",
    )
    data_dir: Path = Field(Path(".devpynode"), description="Where embedded data (SQLite, files, keys) lives.")
    grpc_host: str = Field("127.0.0.1", description="Address the gRPC server binds.")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_port: int = Field(
        9464, ge=-1, le=65535, description="Prometheus /metrics HTTP port; -1 disables, 0 picks a free one."
    )
    only: str = Field("", description="Comma-separated services to run (auth,ai,chat,files); empty runs all.")
    shutdown_grace_seconds: float = Field(10.0, ge=0, description="Grace period for in-flight calls on stop.")
    shutdown_drain_seconds: float = Field(
        2.0,
        ge=0,
        description="On stop, how long health reports NOT_SERVING on a listener that still answers, so probes "
        "and balancers see it before the port closes (at most the grace period).",
    )
    max_message_bytes: int = Field(
        2 * 1024 * 1024, ge=64 * 1024, description="Largest gRPC message accepted or sent (file chunks are 1 MiB)."
    )
    log_level: str = Field("INFO", description="Root log level (DEBUG, INFO, WARNING, ERROR).")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="The event loop `serve` runs on: uvloop (libuv; cheaper per call), or asyncio's own "
        "(where uvloop is not installed, as on Windows, asyncio's is used).",
    )
    trust_forwarded_for: bool = Field(
        False, description="Take the client address from x-forwarded-for (only behind a trusted proxy)."
    )
    # Connection limits: without them a flood of connections that only send the HTTP/2 preface and
    # answer pings holds file descriptors until the process has none left.
    max_connections: int = Field(
        4096,
        ge=1,
        description="Client connections held at once; more are closed as they arrive. Kept below the "
        "process's open-file limit, which the server raises to its hard limit at start.",
    )
    connection_idle_seconds: float = Field(
        300, gt=0, description="A connection with no call for this long is closed (GOAWAY)."
    )
    connection_age_seconds: float = Field(
        3600, gt=0, description="Connections are recycled after this long (GOAWAY), so load spreads again."
    )
    connection_age_grace_seconds: float = Field(
        600,
        ge=0,
        description="How long calls may continue on a connection being recycled; longer streams are "
        "ended and clients reconnect.",
    )
    max_concurrent_streams: int = Field(100, ge=1, description="Calls at once on one connection.")
    http_port: int = Field(
        8080,
        ge=-1,
        le=65535,
        description="Browsers' port: grpc-web for every service and the web app, through an Envoy child of "
        "`serve`; -1 turns it off (compose and Helm run Envoy on their own).",
    )
    web_dir: str = Field("", description="The built web app served on DEVPYNODE_HTTP_PORT (default: web/dist).")
    reuse_port: bool = Field(
        False, description="Bind the gRPC port with SO_REUSEPORT (set for its workers by `serve --workers N`)."
    )
    keepalive_seconds: float = Field(
        60,
        gt=0,
        description="The server pings connections idle this long, and closes them if the ping goes "
        "unanswered for 20 s (peers that vanished without closing).",
    )

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"{value!r} is not a log level; use DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    def chosen(self) -> tuple[str, ...]:
        """The services named in `only` (empty: all of them)."""
        return tuple(s.strip() for s in self.only.split(",") if s.strip())


class StoreSettings(Section):
    """The shared stores: the relational database, and the key-value store with its event feed."""

    database_url: str = Field(
        "", description="SQLAlchemy URL (postgresql+psycopg:// or sqlite+aiosqlite://); default SQLite in the data dir."
    )
    database_statement_timeout_seconds: float = Field(
        10.0,
        ge=0,
        description="Longest a database statement may run (PostgreSQL statement_timeout; on SQLite the wait for "
        "its write lock) before the call fails UNAVAILABLE; 0 = no limit on PostgreSQL.",
    )
    database_pool_timeout_seconds: float = Field(
        5.0, gt=0, description="Longest a call waits for a free pooled database connection before UNAVAILABLE."
    )
    memory_kv_in_data_dir: bool = Field(
        True,
        description="With memory://, keep the key-value store (sign-in sessions, lockouts) in kv.sqlite in the data "
        "dir too, so a restart signs nobody out; false keeps it in memory only.",
    )
    redis_url: str = Field(
        "memory://",
        description="redis://host:port/db (rediss://, unix:// too) for sessions, limits, caches and events "
        "shared between processes; memory:// keeps them in this process.",
    )
    redis_prefix: str = Field("devpynode:", description="Prefix of every Redis key and channel.")
    stream_max_events: int = Field(
        10_000,
        ge=100,
        description="Events kept per event stream (a conversation's live events); a client away for "
        "longer than this many events is told to reload.",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str) -> str:
        return (
            check_url(value, ("memory", "redis", "rediss", "unix"), "memory:// or redis://host:port/db") or "memory://"
        )

    def resolved_database_url(self, data_dir: Path) -> str:
        """The database URL, defaulting to SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(data_dir / 'devpynode.db').resolve()}"


class MeshSettings(Section):
    """How the services of a split mesh trust each other (where they answer is `PeerAddresses`)."""

    service_secret: SecretStr = Field(
        SecretStr(DEV_SERVICE_SECRET),
        description=f"Shared secret services trade for service tokens (IssueServiceToken); at least "
        f"{MIN_SERVICE_SECRET_CHARS} characters outside dev mode.",
    )
    tls_cert_file: str = Field("", description="PEM certificate chain: the gRPC port speaks TLS.")
    tls_key_file: str = Field("", description="PEM private key of DEVPYNODE_TLS_CERT_FILE.")
    tls_client_ca_file: str = Field(
        "", description="PEM CA bundle: callers must present a certificate it signed (mTLS between services)."
    )
    tls_ca_file: str = Field(
        "",
        description="PEM CA bundle that signed the services' certificates: calls to peers use TLS and verify "
        "against it (presenting DEVPYNODE_TLS_CERT_FILE as the client certificate when set).",
    )
    auth_issuer: str = Field("devpynode", description="`iss` of access tokens.")
    auth_audience: str = Field("devpynode", description="`aud` of access tokens.")


def address_field(service: str) -> str:
    """The settings field of a peer's address: `<service>_address`, read from `DEVPYNODE_<SERVICE>_ADDRESS`."""
    return f"{service}_address"


class PeerAddresses(Section):
    """Where the services this process does not run answer: one `<service>_address` field per module.

    The fields are made from the module list (`peer_addresses`), so every service has the same setting
    shape and a new one needs no edit here."""

    def address_of(self, service: str) -> str:
        """The configured address of a peer service ("" when unset)."""
        return str(getattr(self, address_field(service), ""))


@functools.cache
def peer_addresses(services: tuple[str, ...]) -> type[PeerAddresses]:
    """The PeerAddresses section for these services, each field checked as host:port."""
    fields: dict[str, Any] = {
        address_field(name): (
            str,
            Field("", description=f"host:port of the {name} service when this process does not run it."),
        )
        for name in services
    }
    validators = {"_address": field_validator(*fields)(_checked_address)} if fields else {}
    return create_model("PeerAddresses", __base__=PeerAddresses, __validators__=validators, **fields)


def _checked_address(cls: type[PeerAddresses], value: str) -> str:
    return check_address(value)
