"""The fake Ollama of fakes.py with model management: a store of models, and Ollama's administration API.

As Ollama answers (server/routes.go; docs/api.md):
- `GET /api/tags` lists the stored models (names normalised to `name:tag`, `latest` by default);
- `GET /api/ps` the loaded ones, with `size_vram`, `expires_at` and `context_length`;
- `POST /api/show {"model"}` details, `model_info` with `<arch>.context_length`, `capabilities`; 404
  `{"error": "model 'x' not found"}` when missing;
- `POST /api/pull {"model", "stream"}`: 400 `{"error": "invalid model name"}` for a bad name, else NDJSON:
  `pulling manifest`, an `{"error": "pull model manifest: file does not exist"}` line for a name the registry
  lacks, or per layer `pulling <12 hex>` with `digest`, `total`, `completed`, then `verifying sha256 digest`,
  `writing manifest`, `success`; a client that goes away stops the download (counted in `pull_disconnects`);
- `DELETE /api/delete {"model"}`: 200 with no body, 404 when missing;
- `POST /api/generate` without a prompt loads the model (`done_reason: load`), with `keep_alive: 0` unloads
  it (`done_reason: unload`); 404 `model "x" not found, try pulling it first` when missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.ai.fakes import FakeProvider, _chunk, _json

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*){0,2}(:[A-Za-z0-9_][A-Za-z0-9._-]*)?")


def full_name(name: str) -> str:
    """Ollama's normal form: a tag is always there."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass
class RegistryModel:
    """A model the fake registry can hand out: its layers' sizes, and what /api/show says of it."""

    layers: list[int] = field(default_factory=lambda: [4000, 1200])
    family: str = "llama"
    parameter_size: str = "1.2B"
    quantization: str = "Q4_K_M"
    context_length: int = 131072
    capabilities: list[str] = field(default_factory=lambda: ["completion", "tools"])

    def digest(self, name: str, layer: int) -> str:
        return "sha256:" + hashlib.sha256(f"{name}#{layer}".encode()).hexdigest()


class FakeOllama(FakeProvider):
    """A scripted Ollama with a model store, a registry to pull from, and loaded models."""

    def __init__(self) -> None:
        super().__init__("ollama")
        self.registry: dict[str, RegistryModel] = {"llama3.2:latest": RegistryModel(), "smollm2:135m": RegistryModel()}
        self.stored: dict[str, RegistryModel] = {"llama3.2:latest": self.registry["llama3.2:latest"]}
        self.loaded: set[str] = set()
        self.pull_delay = 0.0  # between progress lines
        self.pull_steps = 3  # progress lines per layer
        self.pull_error: str | None = None  # an {"error"} line after the manifest (a registry failure)
        self.pull_disconnects = 0
        self.pulls_completed = 0
        self.script.models = list(self.stored)

    def _sync(self) -> None:
        self.script.models = list(self.stored)

    async def _answer(
        self, method: str, path: str, body: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._sync()
        body = body or {}
        name = full_name(str(body.get("model") or body.get("name") or ""))
        if method == "GET" and path == "/api/ps":
            await _json(writer, 200, {"models": [self._process(m) for m in sorted(self.loaded) if m in self.stored]})
        elif method == "POST" and path == "/api/show":
            await self._show(name, writer)
        elif method == "POST" and path == "/api/pull":
            await self._pull(name, body.get("stream", True), reader, writer)
        elif method == "DELETE" and path == "/api/delete":
            if name not in self.stored:
                await _json(writer, 404, {"error": f"model '{body.get('model')}' not found"})
                return
            del self.stored[name]
            self.loaded.discard(name)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        elif method == "POST" and path == "/api/generate" and not body.get("prompt"):
            await self._load(name, body.get("keep_alive"), writer)
        else:
            await super()._answer(method, path, body, reader, writer)

    def _details(self, model: RegistryModel) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": model.family,
            "families": [model.family],
            "parameter_size": model.parameter_size,
            "quantization_level": model.quantization,
        }

    def _process(self, name: str) -> dict[str, Any]:
        model = self.stored[name]
        return {
            "name": name,
            "model": name,
            "size": sum(model.layers) * 2,
            "digest": model.digest(name, 0)[7:],
            "details": self._details(model),
            "expires_at": "2026-12-03T12:05:00.000000000Z",
            "size_vram": sum(model.layers),
            "context_length": 4096,
        }

    async def _show(self, name: str, writer: asyncio.StreamWriter) -> None:
        model = self.stored.get(name)
        if model is None:
            await _json(writer, 404, {"error": f"model '{name}' not found"})
            return
        await _json(
            writer,
            200,
            {
                "license": "Apache License 2.0",
                "modelfile": f"FROM {name}\n",
                "parameters": 'stop "<|eot_id|>"\ntemperature 0.6',
                "template": "{{ .Prompt }}",
                "details": self._details(model),
                "model_info": {
                    "general.architecture": model.family,
                    "general.parameter_count": 1235814400,
                    f"{model.family}.context_length": model.context_length,
                    f"{model.family}.embedding_length": 2048,
                },
                "capabilities": model.capabilities,
                "modified_at": "2026-11-30T10:00:00.123456789Z",
            },
        )

    async def _load(self, name: str, keep_alive: Any, writer: asyncio.StreamWriter) -> None:
        if name not in self.stored:
            await _json(writer, 404, {"error": f'model "{name}" not found, try pulling it first'})
            return
        unload = keep_alive in (0, "0", "0s")
        if unload:
            self.loaded.discard(name)
        else:
            self.loaded.add(name)
        await _json(
            writer,
            200,
            {
                "model": name,
                "created_at": "2026-12-03T12:00:00Z",
                "response": "",
                "done": True,
                "done_reason": "unload" if unload else "load",
            },
        )

    async def _pull(self, name: str, stream: bool, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not _NAME.fullmatch(name):
            await _json(writer, 400, {"error": "invalid model name"})
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n"
        )
        gone = asyncio.ensure_future(reader.read(1))  # EOF: the client closed the connection

        async def line(part: dict[str, Any]) -> bool:
            """Send one progress line (streamed pulls only); False once the client went away."""
            if self.pull_delay:
                done, _ = await asyncio.wait([gone], timeout=self.pull_delay)
                if done:
                    return False
            if gone.done():
                return False
            if stream:
                await _chunk(writer, json.dumps(part).encode() + b"\n")
            return True

        try:
            if not await line({"status": "pulling manifest"}):
                self.pull_disconnects += 1
                return
            model = self.registry.get(name)
            failure = self.pull_error or (None if model else "pull model manifest: file does not exist")
            if failure or model is None:
                await _chunk(writer, json.dumps({"error": failure}).encode() + b"\n")
                await _chunk(writer, b"")
                return
            for index, size in enumerate(model.layers):
                digest = model.digest(name, index)
                for step in range(1, self.pull_steps + 1):
                    part = {
                        "status": f"pulling {digest[7:19]}",
                        "digest": digest,
                        "total": size,
                        "completed": size * step // self.pull_steps,
                    }
                    if not await line(part):
                        self.pull_disconnects += 1
                        return
            for status in ("verifying sha256 digest", "writing manifest"):
                if not await line({"status": status}):
                    self.pull_disconnects += 1
                    return
            self.stored[name] = model
            await _chunk(writer, json.dumps({"status": "success"}).encode() + b"\n")
            await _chunk(writer, b"")
            self.pulls_completed += 1
        except ConnectionError:
            self.pull_disconnects += 1
        finally:
            gone.cancel()


@pytest.fixture(name="ollama")
async def managed_ollama() -> AsyncIterator[FakeOllama]:
    """The fake Ollama with a model store, as the `ollama` fixture of the modules that import it (the meshes of
    tests/ai/conftest.py's `ai` then use it)."""
    fake = FakeOllama()
    await fake.start()
    yield fake
    await fake.stop()
