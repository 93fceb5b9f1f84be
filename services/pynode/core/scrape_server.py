"""The /metrics listener: prometheus_client's WSGI app on a thread-per-connection server with bounds.

prometheus_client's own `start_http_server` reads a request with no timeout and starts a thread for every
connection: a client that sends its headers a byte at a time (or nothing) held a thread for ever, and enough of
them held as many threads as it liked. Here each connection has `REQUEST_SECONDS` to be answered (its socket is
shut down then, whatever it was doing: a scrape takes milliseconds), and at most `CONNECTIONS` are served at
once; more are closed as they arrive.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

REQUEST_SECONDS = 10.0
CONNECTIONS = 32


class _QuietHandler(WSGIRequestHandler):
    timeout = REQUEST_SECONDS  # also each read's own bound, besides the whole connection's below

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged."""


class ScrapeServer(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most `connections` at once, each cut after `request_seconds`."""

    daemon_threads = True
    connections = CONNECTIONS
    request_seconds = REQUEST_SECONDS

    def server_activate(self) -> None:
        self._slots = threading.BoundedSemaphore(self.connections)
        self._serving = 0
        self._lock = threading.Lock()
        super().server_activate()

    @property
    def serving(self) -> int:
        """Connections being served now."""
        return self._serving

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: closed at once rather than queued behind slow ones
            return
        with self._lock:
            self._serving += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        deadline = threading.Timer(self.request_seconds, _cut, (request,))
        deadline.daemon = True
        deadline.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            deadline.cancel()
            self._done()

    def _done(self) -> None:
        with self._lock:
            self._serving -= 1
        self._slots.release()


def _cut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)  # unblocks the handler's read; its thread then ends


def serve(host: str, port: int, registry: CollectorRegistry) -> ScrapeServer:
    """Start serving `registry` at http://host:port/metrics in a daemon thread; stop with shutdown()."""
    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Bound(ScrapeServer):
        address_family = family

    server = make_server(host, port, make_wsgi_app(registry), Bound, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
