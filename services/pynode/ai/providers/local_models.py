"""The local provider's models for administrators: the configured GGUF files, and switching the one served.

The configured models are `DEVPYNODE_AI_LOCAL_MODEL` (served at start) and `DEVPYNODE_AI_LOCAL_MODELS` (more an
administrator may switch to). `load` switches: the llama.cpp child stops (answers streaming from it end), a new
one starts on the same port with the other file, and the call returns once it serves. A local model run by
compose or Helm (`DEVPYNODE_AI_LOCAL_URL`) is listed, and switched there, not here. GGUF files are neither
pulled nor deleted from here: they come from settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator
from pathlib import Path

from pynode.ai.local_model import (
    LOAD_SECONDS,
    LocalModelProblem,
    LocalModelServer,
    LocalProvider,
    model_name,
    resolve,
)
from pynode.ai.providers.managed import LOAD, PullProgress, StoredModel
from pynode.ai.settings import AISettings
from pynode.core import deadlines
from pynode.core.errors import FailedPrecondition, NotFound, Unavailable

# Quantisation as GGUF file names carry it (`SmolLM2-135M-Instruct.Q4_1.gguf`, `model-IQ3_XXS.gguf`, `-F16`).
_QUANT = re.compile(r"(?<![A-Za-z0-9])(I?Q\d(?:_[A-Z0-9]+)*|F16|F32|BF16)(?![A-Za-z0-9])", re.IGNORECASE)


def configured(settings: AISettings) -> dict[str, str]:
    """name -> spec of every configured local model, the one served at start first."""
    found: dict[str, str] = {}
    for spec in [settings.ai_local_model, *settings.ai_local_models.split(",")]:
        spec = spec.strip()
        if spec and model_name(spec) not in found:
            found[model_name(spec)] = spec
    return found


class LocalModels:
    """The configured GGUF models of the `local` provider; `load` switches the served one."""

    kind = "local"

    def __init__(self, provider: LocalProvider, settings: AISettings, data_dir: Path) -> None:
        self.provider = provider.name
        self._local = provider
        self._settings = settings
        self._log_dir = data_dir / "local-model"
        self._models = configured(settings)
        self._switching = asyncio.Lock()

    @property
    def actions(self) -> tuple[str, ...]:
        # Only a child of this process can be switched; a server of compose or Helm is switched there.
        return (LOAD,) if self._local.server is not None else ()

    async def inventory(self) -> list[StoredModel]:
        return [self._stored(name, spec) for name, spec in self._models.items()]

    def _stored(self, name: str, spec: str) -> StoredModel:
        server = self._local.server
        current = name == self._local.model
        try:
            path = resolve(spec).path
            size, where = path.stat().st_size, str(path)
        except (LocalModelProblem, OSError) as exc:
            path, size, where = None, 0, str(exc)
        if current and server is not None:
            state = server.state
        elif current:
            state = self._local.problem or f"served at {self._local.url}"
        else:
            state = "configured"
        quantization = _QUANT.search(path.name if path else spec)
        return StoredModel(
            provider=self.provider,
            name=name,
            kind=self.kind,
            size_bytes=size,
            quantization=quantization.group(1).upper() if quantization else "",
            format="gguf",
            context_length=self._settings.ai_local_context if current else 0,
            capabilities=("completion", "embedding"),  # the child serves /v1/embeddings too
            loaded=current and server is not None and server.ready,
            actions=self.actions,
            description=f"{where} ({state})" if current else where,
        )

    async def show(self, name: str) -> StoredModel:
        spec = self._models.get(name)
        if spec is None:
            raise self._unknown(name)
        return self._stored(name, spec)

    async def load(self, name: str) -> StoredModel:
        spec = self._models.get(name)
        if spec is None:
            raise self._unknown(name)
        old = self._local.server
        if old is None:
            why = self._local.problem or "it is served by a model server of its own (DEVPYNODE_AI_LOCAL_URL)"
            raise FailedPrecondition(f"the local model cannot be switched here: {why}", reason="ACTION_NOT_SUPPORTED")
        budget = deadlines.outbound_timeout(LOAD_SECONDS)
        async with self._switching:
            if name == self._local.model and old.ready:
                return self._stored(name, spec)
            try:
                model = resolve(spec)
            except LocalModelProblem as exc:
                raise FailedPrecondition(str(exc), reason="LOCAL_MODEL_MISSING") from None
            await old.stop()
            new = LocalModelServer(
                model,
                context=self._settings.ai_local_context,
                threads=self._settings.ai_local_threads,
                log_dir=self._log_dir,
                port=old.port,  # the provider's client keeps its base URL
                api_key=old.api_key,  # and its key
            )
            changed = asyncio.Event()
            refresh = old.on_ready

            def ready_changed() -> None:
                refresh()  # the router's catalog is probed again
                changed.set()

            new.on_ready = ready_changed
            self._local.server, self._local.model, self._local.configured = new, name, [name]
            new.start()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(budget):
                    while not new.ready:
                        changed.clear()
                        await changed.wait()
            if not new.ready:
                raise Unavailable(
                    f"the local model {name} is not serving yet ({new.state}); see {new.log_file}",
                    retry_after=5.0,
                    reason="LOCAL_MODEL_STARTING",
                )
        return self._stored(name, spec)

    def pull(self, name: str) -> AsyncGenerator[PullProgress, None]:
        raise self._refused("pulled")

    async def delete(self, name: str) -> None:
        raise self._refused("deleted")

    async def unload(self, name: str) -> None:
        raise self._refused("unloaded")

    async def close(self) -> None:
        return None  # the provider stops its child

    def _unknown(self, name: str) -> NotFound:
        return NotFound(
            f"no local model {name!r} is configured (configured: {', '.join(self._models) or 'none'}; "
            "DEVPYNODE_AI_LOCAL_MODELS adds more)",
            reason="MODEL_NOT_FOUND",
        )

    def _refused(self, done: str) -> FailedPrecondition:
        return FailedPrecondition(
            f"local models are not {done} from here: they are GGUF files named in DEVPYNODE_AI_LOCAL_MODEL(S); "
            "LoadProviderModel switches between them",
            reason="ACTION_NOT_SUPPORTED",
        )
