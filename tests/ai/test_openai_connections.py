"""The OpenAI-compatible adapter keeps its connections: a streamed answer read to its end (the chunked body's
last chunk after `data: [DONE]`) leaves the connection in the pool, as llama.cpp's server and vLLM end theirs;
one that writes on after [DONE] is dropped after a bounded wait."""

from __future__ import annotations

import asyncio
import json

import pytest

from pynode.ai.domain import Delta, Finished, Message, Prompt, Sampling
from pynode.ai.providers import openai


class KeepAliveServer:
    """Chunked SSE answers on kept-alive connections (uvicorn's way), counting the connections made."""

    def __init__(self, after_done: bytes = b"") -> None:
        self.connections = 0
        self.after_done = after_done
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> KeepAliveServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                )
                for event in (
                    {"choices": [{"index": 0, "delta": {"content": "hello"}}]},
                    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                ):
                    self._chunk(writer, b"data: " + json.dumps(event).encode() + b"\n\n")
                self._chunk(writer, b"data: [DONE]\n\n")
                await writer.drain()
                if self.after_done:
                    await asyncio.sleep(0.3)
                    self._chunk(writer, self.after_done)
                    await writer.drain()
                    await asyncio.sleep(30)  # and never ends the response
                self._chunk(writer, b"")  # the body's end
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, StopIteration):
            pass
        finally:
            writer.close()

    @staticmethod
    def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def _prompt() -> Prompt:
    return Prompt("smollm2", (Message("user", "hi"),), Sampling(max_tokens=2))


async def _answer(provider: openai.OpenAIProvider) -> list[object]:
    return [chunk async for chunk in provider.stream(_prompt())]


async def test_answers_one_after_another_reuse_one_connection() -> None:
    server = await KeepAliveServer().start()
    provider = openai.OpenAIProvider("local", f"http://127.0.0.1:{server.port}/v1")
    try:
        for _ in range(3):
            chunks = await _answer(provider)
            assert isinstance(chunks[0], Delta) and chunks[0].text == "hello"
            assert isinstance(chunks[-1], Finished)
        assert server.connections == 1
    finally:
        await provider.close()
        await server.stop()


async def test_a_server_writing_on_after_done_is_left_after_a_bounded_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai, "DRAIN_SECONDS", 1.0)
    server = await KeepAliveServer(after_done=b": still here\n\n").start()
    provider = openai.OpenAIProvider("local", f"http://127.0.0.1:{server.port}/v1")
    try:
        async with asyncio.timeout(10):
            chunks = await _answer(provider)
            assert isinstance(chunks[-1], Finished)
            await _answer(provider)  # on a new connection: the first one was dropped
        assert server.connections == 2
    finally:
        await provider.close()
        await server.stop()
