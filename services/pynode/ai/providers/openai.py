"""Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server, LM Studio) over httpx.

Streams server-sent events with `stream_options.include_usage`, so the last chunk carries the usage; reads
stop at `data: [DONE]`. httpx directly rather than the `openai` package: the relay splits lines on bytes and
parses each chunk once with orjson and nothing else, which keeps the router's cost per token small.

Tools go out as `tools` (function definitions, the caller's JSON Schema as parsed JSON) and `tool_choice`;
streamed `delta.tool_calls` fragments come back as ToolCallDelta pieces, and an answer with calls ends with
finish reason `tool_calls` (whatever the server said: OpenAI says `stop` for a forced call). Pictures go as
`image_url` content parts with a data URL. Embeddings are `POST /embeddings` with a list of inputs (per-token
vectors, as llama.cpp's server gives for a model without pooling, are mean-pooled here).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from pynode.ai.domain import (
    AUTO,
    LENGTH,
    NAMED,
    STOP,
    TOOL_CALLS,
    Chunk,
    Delta,
    Embeddings,
    Finished,
    Message,
    ModelInfo,
    Prompt,
    ToolCallDelta,
)
from pynode.ai.providers.base import connection_failure, http_failure, public_url
from pynode.ai.tools import parameters_object
from pynode.core.errors import Unavailable

LIST_TIMEOUT_SECONDS = 2.0
DRAIN_SECONDS = 1.0  # for the end of a response after its [DONE]
_FINISH = {
    "stop": STOP,
    "length": LENGTH,
    "content_filter": STOP,
    "tool_calls": TOOL_CALLS,
    "function_call": TOOL_CALLS,
}


def wire_message(message: Message) -> dict[str, Any]:
    """A prompt message in the chat-completions shape (tool calls, tool results and image parts included)."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.tool_calls:
        return {
            "role": message.role,
            # "" rather than null: llama.cpp's server refuses a null content (HTTP 500); OpenAI takes either.
            "content": message.content,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments or "{}"}}
                for c in message.tool_calls
            ],
        }
    if message.images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
        for image in message.images:
            url = f"data:{image.media_type};base64,{base64.b64encode(image.data).decode()}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        return {"role": message.role, "content": parts}
    return {"role": message.role, "content": message.content}


def pooled(embedding: list[Any]) -> list[float]:
    """One vector for an input: as given, or, when the server gave one per token (llama.cpp's server for a
    model without a pooling layer, SmolLM2 among them), their mean scaled to unit length."""
    if not embedding or not isinstance(embedding[0], list):
        return [float(v) for v in embedding]
    size = len(embedding[0])
    mean = [sum(float(token[i]) for token in embedding) / len(embedding) for i in range(size)]
    norm = math.sqrt(sum(v * v for v in mean)) or 1.0
    return [v / norm for v in mean]


def wire_tools(prompt: Prompt) -> dict[str, Any]:
    """`tools` and `tool_choice` of a request (nothing when it has no tools)."""
    if not prompt.tools:
        return {}
    tools = [
        {
            "type": "function",
            "function": {
                "name": t.name,
                **({"description": t.description} if t.description else {}),
                "parameters": parameters_object(t.parameters),
            },
        }
        for t in prompt.tools
    ]
    choice = prompt.tool_choice
    if choice.mode == AUTO:
        return {"tools": tools}
    if choice.mode == NAMED:
        return {"tools": tools, "tool_choice": {"type": "function", "function": {"name": choice.name}}}
    return {"tools": tools, "tool_choice": choice.mode}


class OpenAIProvider:
    """One OpenAI-compatible endpoint under a provider name (model ids `name/model`)."""

    kind = "openai"

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str = "",
        *,
        models: list[str] | None = None,
        options: dict[str, Any] | None = None,
        first_token_seconds: float = 120.0,
        max_connections: int = 64,
    ) -> None:
        self.name = name
        self.url = base_url
        self.configured = list(models or [])
        self.options = dict(options or {})
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(first_token_seconds, connect=5.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def models(self) -> list[ModelInfo]:
        try:
            response = await self._client.get("models", timeout=LIST_TIMEOUT_SECONDS)
            response.raise_for_status()
            listed = [str(m["id"]) for m in response.json().get("data", []) if isinstance(m, dict) and "id" in m]
            available = True
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            listed, available = [], False
        names = self.configured + [m for m in listed if m not in self.configured]
        if not names:
            where = public_url(self.url)
            return [ModelInfo(f"{self.name}/*", self.name, False, description=f"no models answering at {where}")]
        return [ModelInfo(f"{self.name}/{m}", self.name, available) for m in names]

    def _body(self, prompt: Prompt) -> dict[str, Any]:
        sampling = prompt.sampling
        body: dict[str, Any] = {
            **self.options,
            "model": prompt.model,
            "messages": [wire_message(m) for m in prompt.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            **wire_tools(prompt),
        }
        for key, value in (
            ("temperature", sampling.temperature),
            ("top_p", sampling.top_p),
            ("seed", sampling.seed),
            ("max_tokens", sampling.max_tokens or None),
            ("stop", list(sampling.stop) or None),
        ):
            if value is not None:
                body[key] = value
        return body

    async def stream(self, prompt: Prompt) -> AsyncIterator[Chunk]:
        events = _Events(self.name)
        try:
            async with self._client.stream("POST", "chat/completions", json=self._body(prompt)) as response:
                if response.status_code >= 400:
                    body = (await response.aread()).decode(errors="replace")
                    raise http_failure(
                        self.name, prompt.model, response.status_code, body, response.headers.get("retry-after")
                    )
                # Lines are split here, on bytes, rather than by httpx's text line iterator: this loop runs
                # once per token, and it is most of what the relay costs.
                chunks = response.aiter_bytes()
                async for data in chunks:
                    text, tokens = events.feed(data)
                    if events.calls:
                        calls, events.calls = tuple(events.calls), []
                        yield Delta(text, tokens + len(calls), calls)
                    elif tokens:
                        yield Delta(text, tokens)  # all the content one network read held
                    if events.done:
                        break
                if events.done:
                    await _read_to_the_end(chunks)
        except (httpx.TransportError, orjson.JSONDecodeError) as exc:
            raise connection_failure(self.name, exc) from None
        if not events.done and events.finish is None:
            raise Unavailable(f"provider {self.name} ended the stream early", reason="PROVIDER_UNAVAILABLE")
        finish = TOOL_CALLS if events.called else (events.finish or STOP)
        yield Finished(finish, events.prompt_tokens, events.completion_tokens)

    async def embed(self, model: str, inputs: list[str], dimensions: int) -> Embeddings:
        body: dict[str, Any] = {"model": model, "input": inputs, "encoding_format": "float"}
        if dimensions:
            body["dimensions"] = dimensions
        try:
            response = await self._client.post("embeddings", json=body)
            if response.status_code >= 400:
                raise http_failure(
                    self.name, model, response.status_code, response.text, response.headers.get("retry-after")
                )
            answer = orjson.loads(response.content)
            rows = sorted(answer["data"], key=lambda row: row.get("index", 0))
            vectors = [pooled(row["embedding"]) for row in rows]
            usage = answer.get("usage") or {}
        except (httpx.TransportError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise connection_failure(self.name, exc) from None
        return Embeddings(vectors, usage.get("prompt_tokens"))

    async def close(self) -> None:
        await self._client.aclose()


async def _read_to_the_end(body: AsyncIterator[bytes]) -> None:
    """What follows `data: [DONE]` (a chunked body's last, empty chunk), read so the connection goes back to the
    pool: a response left unread is closed, and the next request would connect again (to a local llama.cpp
    server, a TCP handshake and a new connection before every first token). A server that writes on after [DONE]
    gets DRAIN_SECONDS; then the connection is dropped, as before."""
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in body:
                pass


class _Events:
    """Server-sent events of a streamed chat completion, fed as bytes arrive."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.rest = b""
        self.done = False
        self.finish: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.calls: list[ToolCallDelta] = []  # tool-call pieces read and not yet handed over
        self.called = False
        self._started: set[int] = set()  # calls whose id and name were handed over

    def feed(self, data: bytes) -> tuple[str, int]:
        """The content in `data` (and what an earlier read left unfinished), and how many deltas it held."""
        lines = (self.rest + data).split(b"\n")
        self.rest = lines.pop()
        parts: list[str] = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, event names, keep-alives
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                break
            event = orjson.loads(payload)
            if event.get("error"):
                raise Unavailable(f"provider {self.provider} failed mid-stream", reason="PROVIDER_UNAVAILABLE")
            for choice in event.get("choices") or ():
                delta = choice.get("delta") or {}
                content = delta.get("content")
                if content:
                    parts.append(content)
                if delta.get("tool_calls"):
                    self._calls(delta["tool_calls"])
                if choice.get("finish_reason"):
                    self.finish = _FINISH.get(choice["finish_reason"], STOP)
            usage = event.get("usage")
            if usage:
                self.prompt_tokens = usage.get("prompt_tokens")
                self.completion_tokens = usage.get("completion_tokens")
        return "".join(parts), len(parts)

    def _calls(self, pieces: list[dict[str, Any]]) -> None:
        for position, piece in enumerate(pieces):
            function = piece.get("function") or {}
            index = int(piece.get("index", position))
            # llama.cpp repeats the id and name on every piece; callers get them once, on the first.
            first = index not in self._started and bool(piece.get("id") or function.get("name"))
            if first:
                self._started.add(index)
            self.calls.append(
                ToolCallDelta(
                    index,
                    (piece.get("id") or "") if first else "",
                    (function.get("name") or "") if first else "",
                    function.get("arguments") or "",
                )
            )
            self.called = True
