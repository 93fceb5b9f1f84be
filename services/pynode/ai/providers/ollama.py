"""Ollama through the official `ollama` package's async client, on the native `/api/chat` API.

Streams NDJSON parts; the last one (`done`) carries `prompt_eval_count` and `eval_count`, the usage.
`keep_alive` and model options (`num_ctx` and the rest) come from the routing file and are passed through.
Models are listed from `/api/tags`; when nothing answers, the provider lists itself as unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from contextvars import ContextVar
from typing import Any, cast

import httpx
import ollama

from pynode.ai.domain import LENGTH, STOP, Chunk, Delta, Finished, ModelInfo, Prompt
from pynode.ai.providers.base import connection_failure, http_failure, public_url
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

    async def stream(self, prompt: Prompt) -> AsyncIterator[Chunk]:
        messages = [{"role": m.role, "content": m.content} for m in prompt.messages]
        try:
            parts = await self._client.chat(
                model=prompt.model,
                messages=messages,
                stream=True,
                options=self._options(prompt),
                keep_alive=self.keep_alive,
            )
            # aclosing: when the caller goes away, the HTTP response is closed at once (Ollama sees it).
            async with contextlib.aclosing(cast(AsyncGenerator[ollama.ChatResponse, None], parts)) as stream:
                async for part in stream:
                    content = part.message.content if part.message else None
                    if content:
                        yield Delta(content)
                    if part.done:
                        reason = LENGTH if part.done_reason == "length" else STOP
                        yield Finished(reason, part.prompt_eval_count, part.eval_count)
                        return
        except ollama.ResponseError as exc:
            retry_after = _retry_after.get()
            raise http_failure(self.name, prompt.model, exc.status_code, str(exc.error), retry_after) from None
        except (ConnectionError, httpx.TransportError, ValueError) as exc:
            raise connection_failure(self.name, exc) from None
        raise Unavailable(
            f"provider {self.name} ended the stream without its final part", reason="PROVIDER_UNAVAILABLE"
        )

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]
