"""The web app's files, served to Envoy (which puts them on the browsers' port beside grpc-web).

Hashed assets (`assets/name-HASH.ext`, Vite's naming) are cached for ever; `index.html` never is, so a new
deployment is picked up at the next load. Every answer carries a Content-Security-Policy that allows no inline
script, `X-Content-Type-Options: nosniff` and no framing. Unknown paths without an extension get `index.html`
(the app routes in the browser); anything outside the directory is 404. Only GET and HEAD.

While `scripts/run` builds the app in the background, a marker beside the directory (`dist.building`) names the
builder's process: while it lives and the build is not there, the app's pages answer 503 with a page that says so
and reloads itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pynode.core.executors import BlockingPool

log = logging.getLogger("pynode.web")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HASHED = re.compile(r"-[A-Za-z0-9_-]{8,}\.[a-z0-9]+$")
MAX_REQUEST_BYTES = 16 * 1024
# A connection's next request head must be whole this long after it opened or after the previous answer, else it
# is closed: a client sending its headers a byte at a time (or nothing) held a connection and its task for ever.
# Above the gateway's idle time for its upstream connections (gateway.HTTP_UPSTREAM_IDLE), so Envoy drops an idle
# one first and never sends a request down a connection being closed here.
HEADERS_SECONDS = 15.0
READ_THREADS = 2
# No script (the CSP allows none inline): a meta refresh reloads the page until the app is there.
BUILDING_PAGE = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="3">'
    b"<title>Dev-PyNode: building the web app</title></head><body><h1>Building the web app\xe2\x80\xa6</h1>"
    b"<p>scripts/run is building it; the services already answer over gRPC. This page reloads itself.</p>"
    b"</body></html>\n"
)


def building_marker(root: Path) -> Path:
    """The file naming the process that builds the app in `root` (`web/dist.building` for `web/dist`)."""
    return root.with_name(root.name + ".building")


def security_headers() -> list[tuple[str, str]]:
    return [
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
    ]


class WebFiles:
    """A small HTTP/1.1 server for one directory, on loopback, behind Envoy."""

    def __init__(self, root: Path, headers_seconds: float = HEADERS_SECONDS) -> None:
        self.root = root.resolve()
        self.headers_seconds = headers_seconds
        self.port = 0
        self._server: asyncio.Server | None = None
        # Reads in two threads of their own, closed on stop: a page load's burst of assets queues here, not in
        # the loop's default pool.
        self._reads: BlockingPool | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._reads = BlockingPool("web-files", READ_THREADS)
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._reads is not None:
            reads, self._reads = self._reads, None
            await asyncio.to_thread(reads.close)

    def resolve(self, raw_path: str) -> tuple[Path | None, bool]:
        """The file for a request path, and whether it is a hashed (immutable) asset."""
        path = unquote(urlsplit(raw_path).path)
        relative = path.lstrip("/") or "index.html"
        candidate = (self.root / relative).resolve()
        if self.root not in candidate.parents and candidate != self.root:
            return None, False
        if candidate.is_file():
            return candidate, bool(HASHED.search(candidate.name))
        if "." not in Path(relative).name:  # an app route: the app's page
            index = self.root / "index.html"
            return (index if index.is_file() else None), False
        return None, False

    def building(self, raw_path: str) -> bool:
        """True for an app page asked for while the app is being built and not there yet."""
        if "." in Path(unquote(urlsplit(raw_path).path)).name or (self.root / "index.html").is_file():
            return False
        try:
            builder = int(building_marker(self.root).read_text().strip())
            os.kill(builder, 0)  # a marker left by a build that died says nothing
        except (OSError, ValueError):
            return False
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                async with asyncio.timeout(self.headers_seconds):
                    head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > MAX_REQUEST_BYTES:
                    break
                method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
                await self._answer(writer, method, target)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, writer: asyncio.StreamWriter, method: str, target: str) -> None:
        if method not in ("GET", "HEAD"):
            await self._send(writer, 405, b"method not allowed\n", "text/plain", [("Allow", "GET, HEAD")], method)
            return
        found, immutable = self.resolve(target)
        if found is None and self.building(target):
            extra = [("Cache-Control", "no-store"), ("Retry-After", "3")]
            await self._send(writer, 503, BUILDING_PAGE, "text/html; charset=utf-8", extra, method)
            return
        if found is None:
            await self._send(writer, 404, b"not found\n", "text/plain", [], method)
            return
        assert self._reads is not None  # serving means started
        body = await self._reads.run(found.read_bytes)
        kind = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
            kind += "; charset=utf-8"
        cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
        await self._send(writer, 200, body, kind, [("Cache-Control", cache)], method)

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        kind: str,
        extra: list[tuple[str, str]],
        method: str,
    ) -> None:
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[status]
        headers = [("Content-Type", kind), ("Content-Length", str(len(body))), *security_headers(), *extra]
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers), "", ""]
        writer.write("\r\n".join(lines).encode("latin-1") + (body if method != "HEAD" else b""))
        await writer.drain()
