"""The files service's settings: where bytes are stored and how uploads are scanned."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from pynode.core.settings import Section, check_address, check_url


class FilesSettings(Section):
    """Storage and scanning; each field is `DEVPYNODE_<NAME>`."""

    storage_url: str = Field("", description="file:///path or s3://bucket; default file:// in the data dir.")
    s3_endpoint_url: str = Field("", description="S3/MinIO endpoint, e.g. http://minio:9000.")
    s3_access_key: SecretStr = Field(SecretStr(""), description="S3 access key.")
    s3_secret_key: SecretStr = Field(SecretStr(""), description="S3 secret key.")
    s3_region: str = Field("us-east-1", description="S3 region (MinIO accepts any; presigned URLs are signed for it).")
    s3_public_endpoint_url: str = Field(
        "",
        description="Endpoint that browsers reach, for presigned download URLs (default: the S3 endpoint).",
    )
    files_url_seconds: int = Field(900, ge=1, le=7 * 86400, description="Lifetime of a presigned download URL.")
    clamd_address: str = Field("", description="host:port of clamd; unset means uploads are not scanned.")
    files_max_bytes: int = Field(2 * 1024**3, ge=1, description="Largest file accepted, in bytes.")
    files_quota_bytes: int = Field(10 * 1024**3, ge=0, description="Bytes each user may store.")
    files_thumbnail_pixels: int = Field(256, ge=16, le=4096, description="Long side of image thumbnails.")
    files_max_image_pixels: int = Field(
        50_000_000, ge=1, description="Largest image (width x height) accepted; more is refused (decompression bombs)."
    )
    files_max_image_bytes: int = Field(
        128 * 1024**2,
        ge=1024**2,
        description="Most memory decoding one image for its thumbnail may take (width x height x bytes a pixel, "
        "after JPEG's reduced-scale decoding); larger images are refused.",
    )
    files_thumbnail_concurrency: int = Field(
        2, ge=1, le=64, description="Thumbnails a process renders at once (each holds its image and its decoding)."
    )
    files_max_downloads_per_user: int = Field(
        16, ge=1, description="DownloadFile streams one user may have open at once in a process; more wait none."
    )
    files_max_downloads_per_address: int = Field(
        64,
        ge=0,
        description="DownloadFile streams one client address may have open at once in a process, whatever its "
        "accounts (0: no limit); more are refused at once.",
    )
    files_session_hours: float = Field(
        24, gt=0, description="How long an unfinished upload session lives before it is discarded."
    )
    files_allowed_types: str = Field(
        "image/*,audio/*,video/*,text/*,application/pdf,application/json,application/zip,application/gzip,"
        "application/x-tar,application/octet-stream,application/x-empty",
        description="Comma-separated media types (wildcards allowed) accepted, as detected from the bytes.",
    )

    def allowed_types(self) -> tuple[str, ...]:
        """The allowlist as patterns."""
        return tuple(t.strip().lower() for t in self.files_allowed_types.split(",") if t.strip())

    @field_validator("storage_url")
    @classmethod
    def _storage(cls, value: str) -> str:
        return check_url(value, ("file", "s3"), "file:///path or s3://bucket")

    @field_validator("s3_endpoint_url", "s3_public_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return check_url(value, ("http", "https"), "http://host:port or https://host")

    @field_validator("clamd_address")
    @classmethod
    def _clamd(cls, value: str) -> str:
        return check_address(value)
