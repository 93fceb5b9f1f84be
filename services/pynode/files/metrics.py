"""The files service's metrics: uploads by outcome and the bytes stored (upload throughput is their rate)."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import Counter

from pynode.core.errors import FailedPrecondition, InvalidArgument, QuotaExceeded

STORED, REFUSED, FAILED, CANCELLED = "stored", "refused", "failed", "cancelled"


def outcome_of(error: BaseException | None) -> str:
    """How an upload ended: stored, refused (a check or a limit said no), cancelled, or failed."""
    if error is None:
        return STORED
    if isinstance(error, InvalidArgument | FailedPrecondition | QuotaExceeded):
        return REFUSED
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return CANCELLED
    return FAILED


class FilesMetrics:
    """The collectors, registered by the server on its own registry."""

    def __init__(self) -> None:
        self.uploads = Counter(
            "devpynode_files_uploads",
            "Uploads (streams and completed sessions) by outcome: stored, refused, cancelled, failed.",
            ("kind", "outcome"),
            registry=None,
        )
        self.bytes = Counter("devpynode_files_upload_bytes", "Bytes of uploads stored.", registry=None)

    def ended(self, kind: str, error: BaseException | None, size: int) -> None:
        self.uploads.labels(kind, outcome_of(error)).inc()
        if error is None:
            self.bytes.inc(size)

    @property
    def collectors(self) -> list[Any]:
        return [self.uploads, self.bytes]
