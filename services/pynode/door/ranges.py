"""HTTP `Range` requests for file downloads (RFC 9110 section 14): one byte range, or the whole file.

`bytes=0-99` (first bytes), `bytes=100-` (open-ended), `bytes=-100` (the last bytes). A header that is not a
byte range, or names several ranges, is ignored and the whole file is sent with 200 (the RFC lets a server
ignore Range; several ranges would need a multipart answer that no client of this API needs). A single range
that starts past the end, or a file of no bytes, is unsatisfiable: 416 with `Content-Range: bytes */SIZE`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ASCII digits only (RFC 9110's DIGIT; `\d` would take any script's), at most 19 of them (an int64: a longer
# number is no file's offset, and Python refuses to parse more than 4,300 digits).
_ONE_RANGE = re.compile(r"^bytes=([0-9]{0,19})-([0-9]{0,19})$")


@dataclass(frozen=True)
class ByteRange:
    """The satisfiable part of a range: `length` bytes from `offset`, of a file of `size` bytes."""

    offset: int
    length: int
    size: int

    @property
    def content_range(self) -> str:
        return f"bytes {self.offset}-{self.offset + self.length - 1}/{self.size}"


class Unsatisfiable(Exception):
    """A well-formed range that no byte of the file satisfies."""


def parse(header: str, size: int) -> ByteRange | None:
    """The range `header` asks of a file of `size` bytes; None: send the whole file."""
    found = _ONE_RANGE.match(header.replace(" ", ""))
    if found is None:
        return None  # not a byte range, or several: ignored (whole file)
    first, last = found.group(1), found.group(2)
    if not first and not last:
        return None  # `bytes=-` is no range at all
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        suffix = min(suffix, size)
        return ByteRange(size - suffix, suffix, size)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid: ignored, as the RFC says
    if start >= size:
        raise Unsatisfiable
    end = min(end, size - 1)
    return ByteRange(start, end - start + 1, size)
