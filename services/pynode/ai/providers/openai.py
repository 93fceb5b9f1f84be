"""Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server, LM Studio) over httpx.

Streams server-sent events with `stream_options.include_usage`, so the last chunk carries the usage; reads
stop at `data: [DONE]`. httpx directly rather than the `openai` package: the relay splits lines on bytes and
parses each chunk once with orjson and nothing else, which keeps the router's cost per token small.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from pynode.ai.domain import LENGTH, STOP, Chunk, Delta, Finished, ModelInfo, Prompt
from pynode.ai.providers.base import connection_failure, http_failure, public_url
from pynode.core.errors import Unavailable

LIST_TIMEOUT_SECONDS = 2.0
_FINISH = {"stop": STOP, "length": LENGTH, "content_filter": STOP, "tool_calls": STOP}


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
            "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
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
                async for data in response.aiter_bytes():
                    text, tokens = events.feed(data)
                    if tokens:
                        yield Delta(text, tokens)  # all the content one network read held
                    if events.done:
                        break
        except (httpx.TransportError, orjson.JSONDecodeError) as exc:
            raise connection_failure(self.name, exc) from None
        if not events.done and events.finish is None:
            raise Unavailable(f"provider {self.name} ended the stream early", reason="PROVIDER_UNAVAILABLE")
        yield Finished(events.finish or STOP, events.prompt_tokens, events.completion_tokens)

    async def close(self) -> None:
        await self._client.aclose()


class _Events:
    """Server-sent events of a streamed chat completion, fed as bytes arrive."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.rest = b""
        self.done = False
        self.finish: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None

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
                content = (choice.get("delta") or {}).get("content")
                if content:
                    parts.append(content)
                if choice.get("finish_reason"):
                    self.finish = _FINISH.get(choice["finish_reason"], STOP)
            usage = event.get("usage")
            if usage:
                self.prompt_tokens = usage.get("prompt_tokens")
                self.completion_tokens = usage.get("completion_tokens")
        return "".join(parts), len(parts)
