"""Files domain types: a stored file's metadata."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from pynode.core.errors import FieldViolation, InvalidArgument


def object_key(owner_id: str, file_id: uuid.UUID) -> str:
    """Where a file's bytes live (the seed bucket's layout)."""
    return f"users/{owner_id}/uploads/{file_id}"


def thumbnail_key(owner_id: str, file_id: uuid.UUID) -> str:
    """Where a file's thumbnail lives."""
    return f"users/{owner_id}/thumbnails/{file_id}"


def past_the_end(offset: int, size: int) -> InvalidArgument:
    """A download offset past the end of what it reads (the file, or its thumbnail)."""
    return InvalidArgument(
        f"offset {offset} is past the end ({size} bytes)",
        [FieldViolation("offset", f"must be at most {size}", "OUT_OF_RANGE")],
    )


@dataclass(frozen=True)
class StoredFile:
    """A file whose bytes are durably stored: its row exists only then."""

    id: uuid.UUID
    owner_id: str
    filename: str
    content_type: str  # detected from the bytes
    declared_type: str  # what the client said (a hint)
    size: int
    sha256: str
    inline: bool
    created_at: datetime
    has_thumbnail: bool = False

    @property
    def key(self) -> str:
        """Where its bytes live."""
        return object_key(self.owner_id, self.id)

    @property
    def thumbnail_key(self) -> str:
        """Where its thumbnail lives."""
        return thumbnail_key(self.owner_id, self.id)


ACTIVE, COMPLETED, CANCELLED = "active", "completed", "cancelled"


@dataclass
class UploadSessionRecord:
    """A resumable upload: what it will store, how far it got, and where it stands."""

    id: uuid.UUID
    owner_id: str
    filename: str
    declared_type: str
    size_bytes: int  # 0: not declared
    sha256: str  # empty: not declared
    received: int
    state: str
    created_at: datetime
    expires_at: datetime
    file_id: uuid.UUID | None = None
