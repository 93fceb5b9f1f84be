"""What chat needs from its peers, as Protocols; the gRPC adapters live in chat/adapters/."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Attachment:
    """A file attached to a message, as chat shows it."""

    file_id: str
    filename: str
    content_type: str
    size_bytes: int


class AttachmentReader(Protocol):
    """Reads files as the end user (so a member can only attach files they may read)."""

    async def attachment(self, file_id: str) -> Attachment:
        """The file, or NotFound when it does not exist or the caller may not see it."""
