"""Ollama's model administration through the `ollama` package: `/api/tags`, `/api/ps`, `/api/show`,
`/api/pull` (NDJSON progress), `/api/delete`, and load/unload through `/api/generate` without a prompt
(`keep_alive: 0` unloads).

A pull streams Ollama's own progress lines (`pulling manifest`, `pulling <digest>` with `total` and
`completed`, `verifying sha256 digest`, `writing manifest`, `success`); an `{"error": ...}` line ends it.
Closing the iterator closes the HTTP response, and Ollama stops the download when its client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, cast

import httpx
import ollama

from pynode.ai.providers.base import connection_failure, http_failure
from pynode.ai.providers.managed import (
    CAPABILITIES,
    DELETE,
    LOAD,
    PULL,
    UNLOAD,
    PullProgress,
    StoredModel,
    check_model_name,
)
from pynode.core import deadlines
from pynode.core.errors import DomainError, FieldViolation, InvalidArgument, NotFound, Unavailable

QUICK_SECONDS = 10.0  # tags, ps, show, delete, unload: bookkeeping calls that answer at once
PULL_READ_SECONDS = 600.0  # the longest silence in a pull: verifying a large layer's digest says nothing
SHOW_AT_ONCE = 4  # /api/show calls in flight while listing (one per model for capabilities and context)
LICENSE_CHARS = 4000
_MISSING = ("file does not exist", "not found", "manifest unknown", "pull access denied")


class OllamaModels:
    """The models of one Ollama server, under its provider name."""

    kind = "ollama"
    actions: tuple[str, ...] = (PULL, DELETE, LOAD, UNLOAD)

    def __init__(
        self, provider: str, url: str, *, keep_alive: str | float | None = None, load_seconds: float = 120.0
    ) -> None:
        self.provider = provider
        self.url = url
        self.keep_alive = keep_alive
        self.load_seconds = load_seconds
        self._client = ollama.AsyncClient(host=url, timeout=httpx.Timeout(load_seconds, connect=5.0))
        self._pulls = ollama.AsyncClient(host=url, timeout=httpx.Timeout(PULL_READ_SECONDS, connect=5.0))

    # --- reading ----------------------------------------------------------------------------------

    async def inventory(self) -> list[StoredModel]:
        async with self._errors(""):
            async with asyncio.timeout(deadlines.outbound_timeout(QUICK_SECONDS)):
                tags, running = await asyncio.gather(self._client.list(), self._client.ps())
            loaded = {m.model or m.name: m for m in running.models}
            gate = asyncio.Semaphore(SHOW_AT_ONCE)

            async def one(tag: ollama.ListResponse.Model) -> StoredModel:
                name = tag.model or ""
                async with gate:
                    try:
                        async with asyncio.timeout(deadlines.outbound_timeout(QUICK_SECONDS)):
                            shown: ollama.ShowResponse | None = await self._client.show(name)
                    except (ollama.ResponseError, httpx.HTTPError, ConnectionError, TimeoutError, ValueError):
                        shown = None  # the list still says what it can: size, family, quantisation
                return self._stored(name, tag, shown, loaded.get(name))

            return list(await asyncio.gather(*(one(tag) for tag in tags.models)))

    async def show(self, name: str) -> StoredModel:
        check_model_name(name)
        async with self._errors(name):
            async with asyncio.timeout(deadlines.outbound_timeout(QUICK_SECONDS)):
                shown, tags, running = await asyncio.gather(
                    self._client.show(name), self._client.list(), self._client.ps()
                )
        wanted = {name, f"{name}:latest"}
        tag = next((m for m in tags.models if m.model in wanted), None)
        loaded = next((m for m in running.models if (m.model or m.name) in wanted), None)
        stored = self._stored(tag.model or name if tag else name, tag, shown, loaded)
        license_text = shown.license or ""
        return dataclasses.replace(
            stored,
            parameters=shown.parameters or "",
            license=license_text[:LICENSE_CHARS] + ("..." if len(license_text) > LICENSE_CHARS else ""),
        )

    # --- changing ---------------------------------------------------------------------------------

    async def pull(self, name: str) -> AsyncGenerator[PullProgress, None]:
        check_model_name(name)
        async with self._errors(name, pulling=True):
            parts = await self._pulls.pull(name, stream=True)
            # aclosing: a cancelled caller closes the HTTP response at once, and Ollama stops downloading.
            async with contextlib.aclosing(cast(AsyncGenerator[ollama.ProgressResponse, None], parts)) as stream:
                async for part in stream:
                    status = part.status or ""
                    if status == "success":
                        yield PullProgress(status, done=True, model=await self.show(name))
                        return
                    yield PullProgress(status, part.digest or "", part.completed or 0, part.total or 0)
        raise Unavailable(
            f"provider {self.provider} ended the pull of {name} without success", reason="PROVIDER_UNAVAILABLE"
        )

    async def delete(self, name: str) -> None:
        check_model_name(name)
        async with self._errors(name):
            async with asyncio.timeout(deadlines.outbound_timeout(QUICK_SECONDS)):
                await self._client.delete(name)

    async def load(self, name: str) -> StoredModel:
        check_model_name(name)
        async with self._errors(name):
            async with asyncio.timeout(deadlines.outbound_timeout(self.load_seconds)):
                await self._client.generate(model=name, keep_alive=self.keep_alive)
        return await self.show(name)

    async def unload(self, name: str) -> None:
        check_model_name(name)
        async with self._errors(name):
            async with asyncio.timeout(deadlines.outbound_timeout(QUICK_SECONDS)):
                await self._client.generate(model=name, keep_alive=0)

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]
        await self._pulls.close()  # type: ignore[no-untyped-call]

    # --- helpers ----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _errors(self, name: str, *, pulling: bool = False) -> AsyncIterator[None]:
        """Ollama's failures as statuses: its HTTP errors and `{"error"}` lines, and an unreachable server."""
        try:
            yield
        except ollama.ResponseError as exc:
            raise self._failure(name, exc, pulling) from None
        except (ConnectionError, httpx.TransportError, ValueError) as exc:
            raise connection_failure(self.provider, exc) from None
        except TimeoutError:
            raise Unavailable(
                f"provider {self.provider} did not answer in time", retry_after=1.0, reason="PROVIDER_UNAVAILABLE"
            ) from None

    def _failure(self, name: str, exc: ollama.ResponseError, pulling: bool) -> DomainError:
        text = str(exc.error)
        lowered = text.lower()
        if "invalid model name" in lowered:
            return InvalidArgument(
                f"provider {self.provider} refused the model name {name!r}",
                [FieldViolation("name", "Ollama refused it as a model name", "INVALID_MODEL_NAME")],
                reason="INVALID_MODEL_NAME",
            )
        if exc.status_code == 404 or any(word in lowered for word in _MISSING):
            where = "in its registry" if pulling else ""
            return NotFound(
                f"provider {self.provider} has no model {name!r} {where}".rstrip(),
                reason="MODEL_NOT_FOUND",
                metadata={"provider": self.provider, "model": name[:200]},
            )
        if exc.status_code == -1:  # an {"error"} line in a stream: Ollama's own words, shown to an admin
            return Unavailable(
                f"provider {self.provider} failed to pull {name}: {text[:200]}",
                retry_after=5.0,
                reason="PULL_FAILED",
                metadata={"provider": self.provider},
            )
        return http_failure(self.provider, name, exc.status_code, text, None)

    def _stored(
        self,
        name: str,
        tag: ollama.ListResponse.Model | None,
        shown: ollama.ShowResponse | None,
        loaded: ollama.ProcessResponse.Model | None,
    ) -> StoredModel:
        details = (shown.details if shown else None) or (tag.details if tag else None)
        info: Mapping[str, Any] = (shown.modelinfo if shown else None) or {}
        context = next((v for k, v in info.items() if k.endswith(".context_length") and isinstance(v, int)), 0)
        capabilities = tuple(c for c in (shown.capabilities or []) if c in CAPABILITIES) if shown else ()
        return StoredModel(
            provider=self.provider,
            name=name,
            kind=self.kind,
            size_bytes=int(tag.size or 0) if tag else 0,
            family=(details.family or "") if details else "",
            parameter_size=(details.parameter_size or "") if details else "",
            quantization=(details.quantization_level or "") if details else "",
            format=(details.format or "") if details else "",
            context_length=context or (loaded.context_length or 0 if loaded else 0),
            capabilities=capabilities,
            loaded=loaded is not None,
            loaded_size_bytes=int(loaded.size or 0) if loaded else 0,
            loaded_vram_bytes=int(loaded.size_vram or 0) if loaded else 0,
            unload_at=loaded.expires_at if loaded else None,
            digest=(tag.digest or "") if tag else ((loaded.digest or "") if loaded else ""),
            modified_at=(tag.modified_at if tag else None) or (shown.modified_at if shown else None),
            actions=self.actions,
        )
