"""Connection floods: idle HTTP/2 connections that answer pings must not keep a real client out.

The flood speaks just enough HTTP/2 to look alive (preface, SETTINGS and their ACKs, PING ACKs) and
never starts a call: the attack of issue 12, which exhausted file descriptors before limits existed.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import grpc
from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc

from pynode.app.server import MeshServer
from tests.client import new_email
from tests.conftest import one_backend

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY = 4, 6, 7
ACK = 1


def _frame(kind: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + b"\x00\x00\x00\x00" + payload


class IdleConnection:
    """One HTTP/2 connection that is alive and does nothing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.goaway = False

    @classmethod
    async def open(cls, port: int) -> IdleConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(PREFACE + _frame(SETTINGS, 0))
        await writer.drain()
        return cls(reader, writer)

    async def until_closed(self, seconds: float) -> bool:
        """Answer the server until it closes the connection; whether it did within `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    header = await self.reader.readexactly(9)
                    length = int.from_bytes(header[:3], "big")
                    kind, flags = header[3], header[4]
                    payload = await self.reader.readexactly(length)
                    if kind == SETTINGS and not flags & ACK:
                        self.writer.write(_frame(SETTINGS, ACK))
                    elif kind == PING and not flags & ACK:
                        self.writer.write(_frame(PING, ACK, payload))
                    elif kind == GOAWAY:
                        self.goaway = True
        except (asyncio.IncompleteReadError, ConnectionError):
            return True
        except TimeoutError:
            return False
        finally:
            self.writer.close()


async def test_an_idle_flood_is_shed_and_a_real_client_is_served(strict: Any) -> None:
    await strict(max_connections=40, connection_idle_seconds=1.0)
    mesh: MeshServer = strict.servers[-1]
    flood = await asyncio.gather(*(IdleConnection.open(mesh.port) for _ in range(150)))
    watching = [asyncio.ensure_future(c.until_closed(8.0)) for c in flood]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        response = await stub.Register(
            auth_pb2.RegisterRequest(email=new_email(), password="correct horse battery staple", display_name="Real"),
            metadata=[("x-forwarded-for", "10.250.0.1")],
            wait_for_ready=True,
            timeout=20,
        )
        assert response.user.id
    closed = await asyncio.gather(*watching)
    # Over the cap: closed as they arrive; under it: closed once idle for a second.
    assert all(closed), f"{closed.count(False)} of {len(flood)} idle connections were never closed"
    assert any(c.goaway for c in flood), "idle connections are ended with GOAWAY"


async def test_the_server_listens_on_ipv6(strict: Any) -> None:
    await strict(grpc_host="::1")
    mesh: MeshServer = strict.servers[-1]
    async with grpc.aio.insecure_channel(f"[::1]:{mesh.port}") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        response = await stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=10)
        assert response.keys


@one_backend  # the connections never reach a service: which stores are behind the listener does not matter
async def test_silent_connections_are_closed_at_the_handshake_deadline(strict: Any) -> None:
    """Issue 27 #19: TCP connections that never send the HTTP/2 preface held a place under the cap for
    grpc's 120 s default handshake timeout; now for HANDSHAKE_SECONDS, after which a real client gets in."""
    from pynode.app.server import HANDSHAKE_SECONDS

    await strict(max_connections=20, connection_idle_seconds=300)
    mesh: MeshServer = strict.servers[-1]
    silent = [await asyncio.open_connection("127.0.0.1", mesh.port) for _ in range(40)]

    async def closed(reader: asyncio.StreamReader) -> bool:
        try:
            async with asyncio.timeout(HANDSHAKE_SECONDS * 4):
                while await reader.read(4096):
                    pass
        except ConnectionError:
            return True
        except TimeoutError:
            return False
        return True

    try:
        ended = await asyncio.gather(*(closed(reader) for reader, _ in silent))
        assert all(ended), f"{ended.count(False)} of {len(silent)} silent connections outlived the deadline"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.port}") as channel:
            response = await auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest(), timeout=20)
            assert response.keys
    finally:
        for _, writer in silent:
            writer.close()
