"""What a provider that manages its own models offers administrators: an inventory, pulls, deletes, loads.

A provider's model manager is found by the administration service through `ModelManager`; Ollama's is
`OllamaModels`. The local llama.cpp provider reports its configured GGUF files through the same protocol
(`load` switches the served model). A provider with no manager is listed from its `models()` only, and
every change to it is refused as FAILED_PRECONDITION.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from pynode.core.errors import FieldViolation, InvalidArgument

# Capabilities as the providers name them (Ollama's /api/show `capabilities`).
CAPABILITIES = ("completion", "tools", "vision", "embedding", "thinking", "insert")
# Actions a manager may support.
PULL, DELETE, LOAD, UNLOAD = "pull", "delete", "load", "unload"

MAX_NAME = 200
# Ollama's model names: [host/][namespace/]model[:tag], each part of letters, digits, `_`, `-` and `.`
# (a tag up to 80 characters). Checked here so a bad name is INVALID_ARGUMENT before any request is sent.
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_NAME = re.compile(rf"{_PART}(?:/{_PART}){{0,2}}(?::[A-Za-z0-9_][A-Za-z0-9._-]{{0,79}})?")


@dataclass(frozen=True)
class StoredModel:
    """One model a provider holds, with what it says about it."""

    provider: str
    name: str  # the provider's own name, without the provider prefix
    kind: str
    size_bytes: int = 0
    family: str = ""
    parameter_size: str = ""
    quantization: str = ""
    format: str = ""
    context_length: int = 0
    capabilities: tuple[str, ...] = ()
    loaded: bool = False
    loaded_size_bytes: int = 0
    loaded_vram_bytes: int = 0
    unload_at: datetime | None = None
    digest: str = ""
    modified_at: datetime | None = None
    actions: tuple[str, ...] = ()
    description: str = ""
    parameters: str = ""
    license: str = ""

    @property
    def model_id(self) -> str:
        return f"{self.provider}/{self.name}"


@dataclass(frozen=True)
class PullProgress:
    """One step of a pull as the provider reported it; `model` is set on the last one."""

    status: str
    digest: str = ""
    completed: int = 0
    total: int = 0
    done: bool = False
    model: StoredModel | None = None


@dataclass
class Inventory:
    """What every provider holds, and the providers that did not answer."""

    models: list[StoredModel] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)


@runtime_checkable
class ModelManager(Protocol):
    """A provider's model administration. Raises the provider's DomainErrors (NotFound, Unavailable, ...)."""

    provider: str

    @property
    def actions(self) -> tuple[str, ...]:
        """What it supports of PULL, DELETE, LOAD, UNLOAD."""

    async def inventory(self) -> list[StoredModel]:
        """Every model it holds, loaded ones marked; Unavailable when it does not answer."""

    async def show(self, name: str) -> StoredModel:
        """One model in detail; NotFound when it holds no such model."""

    def pull(self, name: str) -> AsyncGenerator[PullProgress, None]:
        """Download a model, step by step; closing the iterator stops the download."""

    async def delete(self, name: str) -> None:
        """Remove a model; NotFound when it holds no such model."""

    async def load(self, name: str) -> StoredModel:
        """Load a model into memory (the local provider: serve this one instead)."""

    async def unload(self, name: str) -> None:
        """Free a loaded model's memory."""

    async def close(self) -> None:
        """Release connections."""


def check_model_name(name: str, field_name: str = "name") -> str:
    """The name when Ollama-shaped, else INVALID_ARGUMENT naming the field."""
    if len(name) > MAX_NAME or not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"{name[:80]!r} is not a model name: use [host/][namespace/]model[:tag] with letters, digits, "
            "'.', '_' and '-' (for example llama3.2:1b)",
            [FieldViolation(field_name, "must be [host/][namespace/]model[:tag]", "INVALID_MODEL_NAME")],
            reason="INVALID_MODEL_NAME",
        )
    return name
