"""The door's own listener against slow clients: headers sent a byte at a time and bodies that never end are cut,
while a real client is still served and a token stream outlives both bounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from devpynode.ai.v1 import ai_pb2

from pynode.door.http_edge import DoorEdge, DoorServer
from pynode.door.ports import Caller

HEADERS_SECONDS = 0.5
BODY_SECONDS = 0.5
CLOSED_WITHIN = 30.0  # far above both bounds: only a connection that is never cut waits this long
CHAT = b'{"model":"builtin/echo","messages":[{"role":"user","content":"hi"}],"stream":true}'


class PacedRouter:
    """A router whose streams send one word per `steps.release()`: the test decides how long they last."""

    def __init__(self) -> None:
        self.steps = asyncio.Semaphore(0)
        self.words = ["a", " long", " answer"]

    async def models(self, caller: Caller) -> list[ai_pb2.Model]:
        return [ai_pb2.Model(id="builtin/echo", provider="builtin", available=True)]

    async def generate(self, caller: Caller, request: ai_pb2.GenerateRequest) -> AsyncIterator[ai_pb2.GenerateResponse]:
        for word in self.words:
            await self.steps.acquire()
            yield ai_pb2.GenerateResponse(text=word, model="builtin/echo")
        yield ai_pb2.GenerateResponse(model="builtin/echo", finish_reason=ai_pb2.FINISH_REASON_STOP)

    async def embed(self, caller: Caller, request: ai_pb2.EmbedRequest) -> ai_pb2.EmbedResponse:
        return ai_pb2.EmbedResponse()


@pytest.fixture
async def door() -> AsyncIterator[tuple[int, PacedRouter]]:
    router = PacedRouter()
    server = DoorServer(DoorEdge(router, 1 << 20, BODY_SECONDS), "127.0.0.1", 0, HEADERS_SECONDS)
    port = await server.start()
    try:
        yield port, router
    finally:
        await server.stop()


async def _closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (the test fails if it never does); a reset
    (the server closed while the client was still sending) counts as closed."""
    try:
        return await asyncio.wait_for(reader.read(), CLOSED_WITHIN)
    except ConnectionResetError:
        return b""


async def test_headers_sent_a_byte_at_a_time_are_cut(door: tuple[int, PacedRouter]) -> None:
    port, _ = door
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: door\r\n")

    async def trickle() -> None:
        while not reader.at_eof():
            writer.write(b"X")  # one byte of a header that never ends
            await writer.drain()
            await asyncio.sleep(0.1)

    dripping = asyncio.create_task(trickle())
    try:
        assert await _closed(reader) == b""  # closed without an answer: there was no request
    finally:
        dripping.cancel()
        writer.close()


async def test_a_connection_that_sends_nothing_is_closed(door: tuple[int, PacedRouter]) -> None:
    port, _ = door
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await _closed(reader) == b""
    writer.close()


async def test_a_body_that_never_ends_is_answered_408_and_cut(door: tuple[int, PacedRouter]) -> None:
    port, _ = door
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: door\r\nAuthorization: Bearer k\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    writer.write(head + CHAT[:10])  # 10 of the 1000 bytes promised, and no more
    answer = await _closed(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code":"request_timeout"' in answer and b"DEVPYNODE_DOOR_BODY_SECONDS" in answer


async def test_real_clients_are_served_and_a_long_stream_outlives_both_bounds(door: tuple[int, PacedRouter]) -> None:
    port, router = door
    # Slow clients holding connections meanwhile.
    stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
    for _, writer in stalled:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: door\r\n")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=CLOSED_WITHIN) as http:
        models = await http.get("/v1/models", headers={"Authorization": "Bearer k"})
        assert models.status_code == 200 and models.json()["data"][0]["id"] == "builtin/echo"
        auth = {"Authorization": "Bearer k", "Content-Type": "application/json"}
        router.steps.release()  # the first word: the answer's status goes out with it
        async with http.stream("POST", "/v1/chat/completions", content=CHAT, headers=auth) as stream:
            assert stream.status_code == 200
            # The stalled connections are cut while the stream is open: it has lasted longer than the header
            # and body bounds by then, and must go on.
            for reader, _ in stalled:
                assert await _closed(reader) == b""
            for _ in router.words[1:]:
                router.steps.release()
            events = [line async for line in stream.aiter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        text = "".join(e.split('"content":"')[1].split('"')[0] for e in events if '"content":"' in e)
        assert text == "a long answer"
        # The same client, on a connection kept alive, is served again.
        again = await http.get("/v1/models", headers={"Authorization": "Bearer k"})
        assert again.status_code == 200
    for _, writer in stalled:
        writer.close()
