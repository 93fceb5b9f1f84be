"""HTTP servers that speak the providers' wire formats, scripted by each test.

Ollama: `GET /api/tags`, and `POST /api/chat` streaming NDJSON parts whose last one is `done` with
`prompt_eval_count` and `eval_count`. OpenAI: `GET /v1/models`, and `POST /v1/chat/completions` streaming
server-sent events: role chunk, content chunks, a finish chunk, the usage chunk (`stream_options.include_usage`)
and `data: [DONE]`. Errors are the providers' JSON error bodies with their statuses (and `Retry-After`).
Each server records the requests it got and notices when a client goes away mid-stream.

Tool calls (`Script.tool_calls`): OpenAI streams each call as a first chunk with `index`, `id`, `type` and
`function.name` (arguments ""), then the arguments in fragments of a few characters, and finishes with
`tool_calls`; Ollama sends whole calls (arguments as a JSON object, no id) in one part before `done`.
Embeddings: OpenAI `POST /v1/embeddings` (`data[].embedding` with `index`, `usage`), Ollama `POST /api/embed`
(`embeddings`, `prompt_eval_count`); each vector is `[len(text), position, 0.5]`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Script:
    """What the next answers look like."""

    tokens: list[str] = field(default_factory=lambda: ["Hello", " from", " the", " fake", " model", "."])
    first_delay: float = 0.0
    delay: float = 0.0
    status: int = 200
    error: str = "failure"
    retry_after: str | None = None
    cut_after: int | None = None  # close the connection after this many tokens, without the final part
    holds: tuple[int, ...] = ()  # before each of these tokens (0-based), wait for one `FakeProvider.release()`
    embed_holds: bool = False  # each embeddings answer waits for one `FakeProvider.release()`
    prompt_tokens: int = 11
    models: list[str] = field(default_factory=lambda: ["llama3.2:latest"])
    tool_calls: list[dict[str, str]] = field(default_factory=list)  # {"id", "name", "arguments"} (JSON text)
    fragment: int = 4  # characters of arguments per OpenAI chunk


@dataclass
class Seen:
    """One request the server got."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


class FakeProvider:
    """A scripted provider on 127.0.0.1; `kind` is "ollama" or "openai"."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.script = Script(models=["llama3.2:latest"] if kind == "ollama" else ["gpt-test"])
        self.seen: list[Seen] = []
        self.disconnects = 0
        self.completed = 0
        self.tokens_sent = 0
        self._released = asyncio.Semaphore(0)
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}" + ("/v1" if self.kind == "openai" else "")

    @property
    def chats(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST"]

    async def start(self) -> FakeProvider:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def release(self) -> None:
        """Let a stream waiting at one of `Script.holds` go on to the next."""
        self._released.release()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            length = int(headers.get("content-length", "0"))
            raw = await reader.readexactly(length) if length else b""
            body = json.loads(raw) if raw else None
            self.seen.append(Seen(method, path, headers, body))
            await self._answer(method, path, body, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(
        self, method: str, path: str, body: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        script = self.script
        if method == "GET" and path in ("/api/tags", "/v1/models"):
            if self.kind == "ollama":
                models = [
                    {
                        "name": m,
                        "model": m,
                        "modified_at": "2026-11-30T10:00:00Z",
                        "size": 2019393189,
                        "digest": "a80c4f17acd5",
                        "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B"},
                    }
                    for m in script.models
                ]
                await _json(writer, 200, {"models": models})
            else:
                await _json(
                    writer, 200, {"object": "list", "data": [{"id": m, "object": "model"} for m in script.models]}
                )
            return
        if method == "POST" and path in ("/v1/embeddings", "/api/embed") and script.status == 200:
            if script.embed_holds:
                await self._released.acquire()
            await self._embed(body or {}, writer)
            return
        if script.status != 200:
            extra = {"Retry-After": script.retry_after} if script.retry_after else {}
            error: Any = {"error": script.error} if self.kind == "ollama" else {"error": {"message": script.error}}
            await _json(writer, script.status, error, extra)
            return
        await self._stream(body or {}, reader, writer)

    async def _embed(self, body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        vectors = [[float(len(t)), float(i), 0.5] for i, t in enumerate(texts)]
        tokens = sum(len(t.split()) for t in texts)
        if self.kind == "ollama":
            answer: dict[str, Any] = {
                "model": body.get("model"),
                "embeddings": vectors,
                "total_duration": 1000,
                "load_duration": 10,
                "prompt_eval_count": tokens,
            }
        else:
            data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
            answer = {
                "object": "list",
                "data": list(reversed(data)),  # in any order: `index` says which input
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        await _json(writer, 200, answer)

    async def _calls(self, model: str, writer: asyncio.StreamWriter) -> None:
        """The scripted tool calls in the provider's wire format."""
        calls = self.script.tool_calls
        if self.kind == "ollama":
            whole = [{"function": {"name": c["name"], "arguments": json.loads(c["arguments"])}} for c in calls]
            part = {
                "model": model,
                "created_at": "2026-12-01T00:00:00Z",
                "message": {"role": "assistant", "content": "", "tool_calls": whole},
                "done": False,
            }
            await _chunk(writer, json.dumps(part).encode() + b"\n")
            return
        step = self.script.fragment
        for index, call in enumerate(calls):
            first = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            await _chunk(writer, _sse(_openai_chunk(model, {"tool_calls": [first]}, None)))
            text = call["arguments"]
            for at in range(0, len(text), step):
                piece = {"index": index, "function": {"arguments": text[at : at + step]}}
                await _chunk(writer, _sse(_openai_chunk(model, {"tool_calls": [piece]}, None)))

    async def _stream(self, body: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script = self.script
        content_type = "application/x-ndjson" if self.kind == "ollama" else "text/event-stream"
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        gone = asyncio.ensure_future(reader.read(1))  # EOF: the client closed the connection
        model = body.get("model", "")
        tokens = script.tokens
        limit = body.get("options", {}).get("num_predict") if self.kind == "ollama" else body.get("max_tokens")
        if limit:
            tokens = tokens[:limit]
        try:
            if self.kind == "openai":
                await _chunk(writer, _sse(_openai_chunk(model, {"role": "assistant", "content": ""}, None)))
            for i, token in enumerate(tokens):
                if i in script.holds:
                    held = asyncio.ensure_future(self._released.acquire())
                    done, _ = await asyncio.wait([gone, held], return_when=asyncio.FIRST_COMPLETED)
                    held.cancel()
                    if gone in done:
                        self.disconnects += 1
                        return
                wait = script.first_delay if i == 0 else script.delay
                if wait:
                    done, _ = await asyncio.wait([gone], timeout=wait)
                    if done:
                        self.disconnects += 1
                        return
                if script.cut_after is not None and i >= script.cut_after:
                    writer.transport.abort()
                    return
                if self.kind == "ollama":
                    part = {
                        "model": model,
                        "created_at": "2026-12-01T00:00:00Z",
                        "message": {"role": "assistant", "content": token},
                        "done": False,
                    }
                    await _chunk(writer, json.dumps(part).encode() + b"\n")
                else:
                    await _chunk(writer, _sse(_openai_chunk(model, {"content": token}, None)))
                self.tokens_sent += 1
            if script.tool_calls:
                await self._calls(model, writer)
            reason = "length" if limit and len(script.tokens) > limit else "stop"
            if script.tool_calls and self.kind == "openai":
                reason = "tool_calls"
            if self.kind == "ollama":
                final = {
                    "model": model,
                    "created_at": "2026-12-01T00:00:01Z",
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "done_reason": reason,
                    "total_duration": 1000,
                    "prompt_eval_count": script.prompt_tokens,
                    "eval_count": len(tokens),
                }
                await _chunk(writer, json.dumps(final).encode() + b"\n")
            else:
                await _chunk(writer, _sse(_openai_chunk(model, {}, reason)))
                usage = {
                    "prompt_tokens": script.prompt_tokens,
                    "completion_tokens": len(tokens),
                    "total_tokens": script.prompt_tokens + len(tokens),
                }
                await _chunk(
                    writer,
                    _sse(
                        {
                            "id": "chatcmpl-1",
                            "object": "chat.completion.chunk",
                            "created": 1,
                            "model": model,
                            "choices": [],
                            "usage": usage,
                        }
                    ),
                )
                await _chunk(writer, b"data: [DONE]\n\n")
            await _chunk(writer, b"")
            self.completed += 1
        except ConnectionError:
            self.disconnects += 1
        finally:
            gone.cancel()


def _openai_chunk(model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"


async def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


async def _json(writer: asyncio.StreamWriter, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(payload).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 503: "Service Unavailable"}
    writer.write(
        f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n{extra}Connection: close\r\n\r\n".encode()
        + data
    )
    await writer.drain()
