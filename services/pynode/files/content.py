"""The checks an upload's bytes pass before they are a file, the same for streamed uploads and sessions.

The type is sniffed from the first SNIFF_BYTES (and refused against the allowlist as soon as they are in), the
bytes are counted, hashed (SHA-256) and fed to the scanner when there is one; `finish` then compares the size
and the digest with the declaration and waits for the scanner's verdict. The digest is computed off the event
loop by whoever carries the bytes to a thread anyway (`observe`, handed to the writer or the staged object):
a local upload hashes and writes each chunk in one trip.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pynode.core.errors import FailedPrecondition, FieldViolation, InvalidArgument
from pynode.files import detect
from pynode.files.ports import Chunk, Scanner, ScanStream


@dataclass(frozen=True)
class Checked:
    """What the checks found: the type the bytes show, their size and SHA-256."""

    content_type: str
    size: int
    sha256: str


def check_type(head: bytes, declared: str, allowed_types: tuple[str, ...]) -> str:
    """The type the bytes show, refused unless the allowlist has it."""
    detected = detect.refine(detect.detect(head), declared)
    if not detect.allowed(detected, allowed_types):
        raise FailedPrecondition(
            f"files of type {detected} are not accepted here",
            reason="TYPE_NOT_ALLOWED",
            metadata={"detected_type": detected},
        )
    return detected


@dataclass(frozen=True)
class Declared:
    """What the client said about the bytes (0 and "": not said)."""

    content_type: str
    size_bytes: int
    sha256: str


class ContentCheck:
    """One upload's checks: `see` each chunk (in order), have `observe` run on each off the loop, then
    `finish`; `close` whatever happens."""

    def __init__(self, declared: Declared, allowed_types: tuple[str, ...], scan: ScanStream | None) -> None:
        self._declared = declared
        self._allowed = allowed_types
        self._scan = scan
        self._digest = hashlib.sha256()
        self._head = bytearray()
        self._detected: str | None = None
        self.size = 0

    @classmethod
    async def start(cls, declared: Declared, allowed_types: tuple[str, ...], scanner: Scanner | None) -> ContentCheck:
        """A check with its scan begun (UNAVAILABLE when a configured scanner cannot be reached)."""
        return cls(declared, allowed_types, await scanner.start() if scanner is not None else None)

    def observe(self, chunk: Chunk) -> None:
        """Hash a chunk: a blocking call, for the thread that carries the chunk (chunks come in order)."""
        self._digest.update(chunk)

    async def see(self, chunk: Chunk) -> None:
        """Count and sniff a chunk (the type is refused as soon as the head is in) and scan it."""
        self.size += len(chunk)
        if self._detected is None:
            self._head += chunk[: detect.SNIFF_BYTES - len(self._head)]
            if len(self._head) >= detect.SNIFF_BYTES:
                self._detected = self._type()
        if self._scan is not None:
            await self._scan.feed(chunk)

    def _type(self) -> str:
        return check_type(bytes(self._head), self._declared.content_type, self._allowed)

    async def finish(self, what_next: str = "") -> Checked:
        """The type, size and SHA-256 once every chunk was seen and observed; refuses a size or a digest other
        than declared (INVALID_ARGUMENT; `what_next` ends the digest's message) or a detection."""
        declared = self._declared
        detected = self._detected or self._type()
        if declared.size_bytes and self.size != declared.size_bytes:
            raise InvalidArgument(
                f"the upload has {self.size} bytes, not the {declared.size_bytes} declared",
                [FieldViolation("metadata.size_bytes", f"the content has {self.size} bytes", "SIZE_MISMATCH")],
            )
        if self._scan is not None:
            await self._scan.verdict()
        sha256 = self._digest.hexdigest()
        if declared.sha256 and sha256 != declared.sha256:
            raise InvalidArgument(
                f"the content's SHA-256 is not the one declared{what_next}",
                [FieldViolation("metadata.sha256", "does not match the content", "CHECKSUM_MISMATCH")],
            )
        return Checked(detected, self.size, sha256)

    def close(self) -> None:
        if self._scan is not None:
            self._scan.close()
