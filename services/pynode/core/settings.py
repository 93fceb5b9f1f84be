"""Settings: one pydantic-settings tree read from `DEVPYNODE_*` environment variables.

Nothing here is created at import time: `Settings()` is called by the CLI and
tests and handed to the bootstrap.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_NAMES = ("auth", "ai", "chat", "files")
DEV_SERVICE_SECRET = "dev-service-secret-not-for-production"  # noqa: S105 - refused outside dev mode


class SettingsError(ValueError):
    """A setting is malformed or unsafe; the message names the variable."""


class Settings(BaseSettings):
    """Every knob of the platform. Each field is `DEVPYNODE_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="DEVPYNODE_", extra="ignore")

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
    max_message_bytes: int = Field(
        2 * 1024 * 1024, ge=64 * 1024, description="Largest gRPC message accepted or sent (file chunks are 1 MiB)."
    )
    log_level: str = Field("INFO", description="Root log level.")

    database_url: str = Field("", description="SQLAlchemy URL; default SQLite in the data dir.")
    redis_url: str = Field("memory://", description="redis://host:port/db, or memory:// for in-process.")
    redis_prefix: str = Field("devpynode:", description="Prefix for every Redis key.")
    storage_url: str = Field("", description="file:///path or s3://bucket; default file:// in the data dir.")
    s3_endpoint_url: str = Field("", description="S3/MinIO endpoint, e.g. http://minio:9000.")
    s3_access_key: SecretStr = Field(SecretStr(""), description="S3 access key.")
    s3_secret_key: SecretStr = Field(SecretStr(""), description="S3 secret key.")
    ollama_url: str = Field("http://127.0.0.1:11434", description="Ollama base URL.")
    openai_base_url: str = Field("", description="OpenAI-compatible API base URL; empty disables it.")
    openai_api_key: SecretStr = Field(SecretStr(""), description="API key for the OpenAI-compatible API.")

    auth_address: str = Field("", description="host:port of the auth service when it runs in another process.")
    service_secret: SecretStr = Field(
        SecretStr(DEV_SERVICE_SECRET), description="Shared secret services trade for service tokens."
    )
    auth_private_keys: SecretStr = Field(
        SecretStr(""),
        description="Ed25519 private keys (PEM, concatenated). The first signs; all verify. "
        "Empty in dev mode: a key is generated in the data dir.",
    )
    auth_public_keys: str = Field("", description="Extra verify-only Ed25519 public keys (PEM), for rotation.")
    auth_issuer: str = Field("devpynode", description="`iss` of access tokens.")
    auth_audience: str = Field("devpynode", description="`aud` of access tokens.")
    access_token_seconds: int = Field(900, ge=30, le=86400, description="Access token lifetime.")
    refresh_token_days: float = Field(30, gt=0, le=365, description="Absolute lifetime of a login session.")
    refresh_grace_seconds: float = Field(
        30, ge=0, le=300, description="Window in which a just-rotated refresh token may be replayed."
    )
    bcrypt_cost: int = Field(12, ge=4, le=16, description="bcrypt work factor.")
    bcrypt_workers: int = Field(0, ge=0, description="Threads hashing passwords; 0 means one per core.")
    bcrypt_queue: int = Field(
        0,
        ge=0,
        description="Hashes that may wait for a thread; beyond that Register/Login/ChangePassword answer UNAVAILABLE "
        "with RetryInfo instead of queueing without end. 0 means 16 per thread (about 4 s of waiting at cost 12).",
    )
    bcrypt_nice: int = Field(
        19,
        ge=0,
        le=19,
        description="CPU niceness of the hashing threads; above 0 they also run SCHED_IDLE (Linux), so hashing "
        "never delays cheap RPCs. 0 leaves them at normal priority.",
    )
    trust_forwarded_for: bool = Field(
        False, description="Take the client address from x-forwarded-for (only behind a trusted proxy)."
    )
    rate_limit_per_minute: int = Field(
        30, ge=1, description="Register/Login/RefreshToken calls per minute per client address and per account."
    )
    lockout_free_failures: int = Field(5, ge=1, description="Failed logins per address and account before delays.")
    lockout_max_seconds: int = Field(900, ge=1, description="Longest lockout delay.")
    account_flood_failures: int = Field(
        50, ge=1, description="Failed logins on one account (all addresses, 15 min) that slow unknown addresses."
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        unknown = {s for s in self.services() if s not in SERVICE_NAMES}
        if unknown:
            raise SettingsError(f"DEVPYNODE_ONLY: unknown service(s) {sorted(unknown)}; choose from {SERVICE_NAMES}")
        return self

    def services(self) -> tuple[str, ...]:
        """Services this process runs."""
        chosen = tuple(s.strip() for s in self.only.split(",") if s.strip())
        return chosen or SERVICE_NAMES

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'devpynode.db').resolve()}"

    def check_production_safety(self) -> None:
        """Refuse development secrets outside dev mode."""
        if self.dev_mode:
            return
        if self.service_secret.get_secret_value() in ("", DEV_SERVICE_SECRET):
            raise SettingsError("DEVPYNODE_SERVICE_SECRET: the development default is refused when dev mode is off")
        if "auth" in self.services() and not self.auth_private_keys.get_secret_value():
            raise SettingsError(
                "DEVPYNODE_AUTH_PRIVATE_KEYS: required when dev mode is off (generated keys are for development)"
            )
