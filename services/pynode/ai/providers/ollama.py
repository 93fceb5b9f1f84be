"""Ollama on its native API: `/api/chat` (streamed), `/api/embed`, and `/api/tags` through the official package.

Streams NDJSON parts; the last one (`done`) carries `prompt_eval_count` and `eval_count`, the usage.
`keep_alive` and model options (`num_ctx` and the rest) come from the routing file and are passed through.
Models are listed from `/api/tags` with the `ollama` package; when nothing answers, the provider lists itself
as unavailable. Chat and embeddings are plain httpx with orjson: the package's request models rewrite tool
schemas (they keep only the keys they know, so `minimum` or `additionalProperties` would vanish).

Tools go as `tools` (Ollama has no tool choice: `none` sends no tools, `named` offers only that tool);
Ollama answers with whole calls (arguments as a JSON object, no id), so each becomes one ToolCallDelta
with an id made here. Tool results go back as `role: tool` with the called tool's `tool_name`; pictures as
base64 `images` on their message.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import httpx
import ollama
import orjson

from pynode.ai.domain import (
    LENGTH,
    NAMED,
    NONE,
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

# Set by the response hook in the task making the request, read where its error is mapped.
_retry_after: ContextVar[str | None] = ContextVar("ollama_retry_after", default=None)


async def _remember_retry_after(response: httpx.Response) -> None:
    _retry_after.set(response.headers.get("retry-after") if response.status_code == 429 else None)


class OllamaProvider:
    """One Ollama server under a provider name (model ids `name/model`)."""

    kind = "ollama"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        keep_alive: str | float | None = None,
        options: dict[str, Any] | None = None,
        first_token_seconds: float = 120.0,
    ) -> None:
        self.name = name
        self.url = url
        self.keep_alive = keep_alive
        self.options = dict(options or {})
        # A read may wait for a cold model load: the first-token allowance bounds every read.
        timeout = httpx.Timeout(first_token_seconds, connect=5.0)
        # The ollama package drops response headers from its errors; a hook keeps Retry-After for them.
        self._client = ollama.AsyncClient(host=url, timeout=timeout, event_hooks={"response": [_remember_retry_after]})
        self._http = httpx.AsyncClient(base_url=url.rstrip("/") + "/", timeout=timeout)

    async def models(self) -> list[ModelInfo]:
        try:
            listed = await asyncio.wait_for(self._client.list(), LIST_TIMEOUT_SECONDS)
        except (ConnectionError, httpx.HTTPError, ollama.ResponseError, TimeoutError, ValueError):
            where = public_url(self.url)
            return [ModelInfo(f"{self.name}/*", self.name, False, description=f"no Ollama answering at {where}")]
        found = []
        for model in listed.models:
            details = model.details
            about = " ".join(str(x) for x in (details.family, details.parameter_size) if x) if details else ""
            found.append(ModelInfo(f"{self.name}/{model.model}", self.name, True, description=about))
        return found

    def _options(self, prompt: Prompt) -> dict[str, Any]:
        sampling = prompt.sampling
        options = dict(self.options)
        for key, value in (
            ("temperature", sampling.temperature),
            ("top_p", sampling.top_p),
            ("seed", sampling.seed),
            ("num_predict", sampling.max_tokens or None),
            ("stop", list(sampling.stop) or None),
        ):
            if value is not None:
                options[key] = value
        return options

    def _body(self, prompt: Prompt) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": prompt.model,
            "messages": wire_messages(prompt.messages),
            "stream": True,
            "options": self._options(prompt),
        }
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        tools = prompt.tools
        if prompt.tool_choice.mode == NONE:
            tools = ()
        elif prompt.tool_choice.mode == NAMED:
            tools = tuple(t for t in tools if t.name == prompt.tool_choice.name)
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": parameters_object(t.parameters),
                    },
                }
                for t in tools
            ]
        return body

    async def stream(self, prompt: Prompt) -> AsyncIterator[Chunk]:
        calls = 0
        try:
            async with self._http.stream("POST", "api/chat", json=self._body(prompt)) as response:
                if response.status_code >= 400:
                    raise http_failure(
                        self.name,
                        prompt.model,
                        response.status_code,
                        _error_text(await response.aread()),
                        response.headers.get("retry-after"),
                    )
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    part = orjson.loads(line)
                    if part.get("error"):
                        raise Unavailable(f"provider {self.name} failed mid-stream", reason="PROVIDER_UNAVAILABLE")
                    message = part.get("message") or {}
                    content = message.get("content")
                    pieces = []
                    for call in message.get("tool_calls") or ():
                        function = call.get("function") or {}
                        arguments = function.get("arguments")
                        text = arguments if isinstance(arguments, str) else orjson.dumps(arguments or {}).decode()
                        call_id = call.get("id") or f"call_{uuid.uuid4().hex[:24]}"
                        pieces.append(ToolCallDelta(calls, call_id, str(function.get("name") or ""), text))
                        calls += 1
                    if content or pieces:
                        yield Delta(content or "", 1, tuple(pieces))
                    if part.get("done"):
                        reason = TOOL_CALLS if calls else LENGTH if part.get("done_reason") == "length" else STOP
                        yield Finished(reason, part.get("prompt_eval_count"), part.get("eval_count"))
                        return
        except (httpx.TransportError, orjson.JSONDecodeError) as exc:
            raise connection_failure(self.name, exc) from None
        raise Unavailable(
            f"provider {self.name} ended the stream without its final part", reason="PROVIDER_UNAVAILABLE"
        )

    async def embed(self, model: str, inputs: list[str], dimensions: int) -> Embeddings:
        body: dict[str, Any] = {"model": model, "input": inputs}
        if dimensions:
            body["dimensions"] = dimensions
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        try:
            response = await self._http.post("api/embed", json=body)
            if response.status_code >= 400:
                raise http_failure(
                    self.name,
                    model,
                    response.status_code,
                    _error_text(response.content),
                    response.headers.get("retry-after"),
                )
            answer = orjson.loads(response.content)
            vectors = [[float(v) for v in row] for row in answer["embeddings"]]
        except (httpx.TransportError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise connection_failure(self.name, exc) from None
        return Embeddings(vectors, answer.get("prompt_eval_count"))

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]
        await self._http.aclose()


def _error_text(raw: bytes) -> str:
    """Ollama's `{"error": "..."}` body as text (the raw body when it is not that shape)."""
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")
    return str(answer.get("error", "")) if isinstance(answer, dict) else raw.decode(errors="replace")


def wire_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Prompt messages in `/api/chat`'s shape: a tool result names the tool called (looked up by call id)."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            item["tool_calls"] = [
                {"function": {"name": c.name, "arguments": parameters_object(c.arguments)}} for c in message.tool_calls
            ]
            names.update((c.id, c.name) for c in message.tool_calls)
        if message.role == "tool":
            item["tool_name"] = names.get(message.tool_call_id, "")
        if message.images:
            item["images"] = [base64.b64encode(image.data).decode() for image in message.images]
        out.append(item)
    return out
