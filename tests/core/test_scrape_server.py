"""The /metrics listener bounds slow clients: one sending its headers a byte at a time is cut, connections past
the cap are closed at once, and a scrape is still answered."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from pynode.core import scrape_server
from tests.client import eventually


@pytest.fixture
def scrapes(monkeypatch: pytest.MonkeyPatch) -> Iterator[scrape_server.ScrapeServer]:
    monkeypatch.setattr(scrape_server.ScrapeServer, "request_seconds", 0.5)
    monkeypatch.setattr(scrape_server.ScrapeServer, "connections", 4)
    registry = CollectorRegistry()
    Counter("devpynode_test_total", "a test counter", registry=registry).inc()
    server = scrape_server.serve("127.0.0.1", 0, registry)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


async def _closed(reader: asyncio.StreamReader) -> bytes:
    with contextlib.suppress(ConnectionResetError):
        return await asyncio.wait_for(reader.read(), 30)  # far above the bound: only an uncut one waits this long
    return b""


def _port(server: scrape_server.ScrapeServer) -> int:
    return int(server.server_address[1])


async def test_a_slow_client_is_cut_and_a_scrape_is_still_answered(scrapes: scrape_server.ScrapeServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(scrapes))
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: m\r\n")

    async def trickle() -> None:
        while not reader.at_eof():
            writer.write(b"X")
            await writer.drain()
            await asyncio.sleep(0.1)

    dripping = asyncio.create_task(trickle())
    try:
        assert await _closed(reader) == b""
    finally:
        dripping.cancel()
        writer.close()
    async with httpx.AsyncClient() as http:
        page = await http.get(f"http://127.0.0.1:{_port(scrapes)}/metrics", timeout=30)
    assert page.status_code == 200 and "devpynode_test_total 1.0" in page.text


async def test_connections_past_the_cap_are_closed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scrape_server.ScrapeServer, "connections", 4)
    server = scrape_server.serve("127.0.0.1", 0, CollectorRegistry())  # the default 10 s each
    try:
        held = [await asyncio.open_connection("127.0.0.1", _port(server)) for _ in range(4)]  # silent: a thread each
        await eventually(lambda: server.serving == 4, 30)  # accepted (in the server's own thread)
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
        assert await _closed(reader) == b""  # no answer: closed, not queued behind the silent ones
        writer.close()
        for _, held_writer in held:
            held_writer.close()
    finally:
        server.shutdown()
        server.server_close()
