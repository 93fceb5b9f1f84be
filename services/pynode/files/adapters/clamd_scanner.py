"""Scanner on ClamAV: virus scanning over clamd's INSTREAM protocol, fed alongside the write (buffered up to
FEED_BUFFER, so that receiving, writing and feeding the scanner overlap).

A scan opens one TCP connection to clamd and sends `zINSTREAM\\0`, then each chunk as it is written (a 4-byte
big-endian length, then the bytes), then a zero length; clamd answers `stream: OK` or `stream: <name> FOUND`.
A detection refuses the upload (FAILED_PRECONDITION, reason MALWARE_DETECTED, the signature in the ErrorInfo
metadata). A configured scanner that cannot be reached, or that gives up, fails closed: UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from pynode.core import tracing
from pynode.core.errors import FailedPrecondition, Unavailable
from pynode.files.ports import Chunk

CONNECT_SECONDS = 5.0
VERDICT_SECONDS = 60.0
FEED_BUFFER = 8 * 1024 * 1024  # bytes of a scan's stream that may wait for clamd to read them


def _unavailable(why: str) -> Unavailable:
    return Unavailable(
        f"the virus scanner {why}; the upload was not stored", retry_after=5.0, reason="SCANNER_UNAVAILABLE"
    )


class Scan:
    """One INSTREAM scan in progress (a `ScanStream`)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def feed(self, chunk: Chunk) -> None:
        try:
            self._writer.write(struct.pack(">I", len(chunk)))
            self._writer.write(chunk)  # not joined to its length: that would copy the MiB once more
            await self._writer.drain()  # at once, until clamd lags FEED_BUFFER behind
        except (ConnectionError, OSError):
            # clamd closes the stream when it hits its StreamMaxLength; the verdict says so
            raise await self._failure() from None

    async def _failure(self) -> Exception:
        with contextlib.suppress(Exception):
            answer = await asyncio.wait_for(self._reader.read(4096), 2.0)
            if answer:
                return _unavailable(f"refused the stream ({answer.decode(errors='replace').strip(chr(0)).strip()})")
        return _unavailable("closed the connection")

    async def verdict(self) -> None:
        """Finish the stream; raise FailedPrecondition on a detection."""
        with tracing.span("clamd verdict", kind="client"):
            await self._verdict()

    async def _verdict(self) -> None:
        try:
            self._writer.write(struct.pack(">I", 0))
            await self._writer.drain()
            answer = await asyncio.wait_for(self._reader.readuntil(b"\0"), VERDICT_SECONDS)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise await self._failure() from None
        except TimeoutError:
            raise _unavailable("gave no verdict in time") from None
        finally:
            self.close()
        text = answer.rstrip(b"\0").decode(errors="replace").strip()
        result = text.partition(":")[2].strip()
        if result == "OK":
            return
        if result.endswith(" FOUND"):
            signature = result.removesuffix(" FOUND").strip()
            raise FailedPrecondition(
                f"the upload contains malware ({signature}); it was not stored",
                reason="MALWARE_DETECTED",
                metadata={"signature": signature},
            )
        raise _unavailable(f"could not scan the upload ({result or text})")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()


class ClamdScanner:
    """The `Scanner` port on clamd at `host:port`."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)

    async def start(self) -> Scan:
        with tracing.span("clamd connect", kind="client", **{"server.address": self.host, "server.port": self.port}):
            return await self._start()

    async def _start(self) -> Scan:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), CONNECT_SECONDS)
        except (OSError, TimeoutError):
            raise _unavailable(f"at {self.host}:{self.port} cannot be reached") from None
        # The upload goes on while clamd reads: the feed waits only when clamd lags FEED_BUFFER behind (with
        # asyncio's default of 64 KiB, every chunk waited for clamd to take it before the next was received).
        writer.transport.set_write_buffer_limits(high=FEED_BUFFER)
        writer.write(b"zINSTREAM\0")
        return Scan(reader, writer)
