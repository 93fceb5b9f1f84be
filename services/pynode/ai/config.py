"""The routing configuration: providers, aliases with weighted deployments, fallbacks and limits.

From the environment (one Ollama, one OpenAI-compatible endpoint) and, when `DEVPYNODE_AI_CONFIG` names one,
a YAML file, validated at start with one line per mistake:

    providers:
      local: {type: ollama, url: "http://127.0.0.1:11434", keep_alive: 10m, options: {num_ctx: 8192}}
      vllm: {type: openai, url: "http://gpu-1:8000/v1", models: [llama-3.1-8b], max_concurrency: 16}
      openai: {type: openai, url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY}
    aliases:
      default:
        deployments: [{model: vllm/llama-3.1-8b, weight: 3}, {model: openai/gpt-4o-mini, weight: 1}]
        fallbacks: [local/llama3.2, builtin/echo]
    circuit: {failures: 3, cooldown_seconds: 30}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pynode.ai.settings import AISettings
from pynode.core.settings import SettingsError, check_url

RESERVED_PROVIDERS = ("builtin",)
LOCAL_PROVIDER = "local"  # the llama.cpp model of DEVPYNODE_AI_LOCAL_MODEL / DEVPYNODE_AI_LOCAL_URL


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Strict):
    """One provider: an Ollama server or an OpenAI-compatible endpoint."""

    type: Literal["ollama", "openai"]
    url: str
    api_key: str = ""
    api_key_env: str = ""
    keep_alive: str | float | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    models: list[str] = Field(default_factory=list)
    max_concurrency: int | None = Field(None, ge=1)
    max_queue: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _url(self) -> ProviderConfig:
        check_url(self.url, ("http", "https"), "http://host:port or https://host")
        return self

    def key(self) -> str:
        """The API key: inline, or read from the named environment variable."""
        return self.api_key or (os.environ.get(self.api_key_env, "") if self.api_key_env else "")


class Deployment(_Strict):
    """A model an alias may send a request to, with its share of the traffic."""

    model: str
    weight: float = Field(1.0, gt=0)


class Alias(_Strict):
    """A name for weighted deployments, tried in a weighted-random order, then the fallbacks in order."""

    deployments: list[Deployment] = Field(min_length=1)
    fallbacks: list[str] = Field(default_factory=list)


class Circuit(_Strict):
    """When a failing deployment is skipped, and for how long."""

    failures: int = Field(3, ge=1)
    cooldown_seconds: float = Field(30.0, gt=0)


class RoutingFile(_Strict):
    """The YAML file's shape."""

    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    aliases: dict[str, Alias] = Field(default_factory=dict)
    circuit: Circuit = Field(default_factory=lambda: Circuit.model_validate({}))


class RouterConfig(_Strict):
    """Everything the router is built from (the file merged over the environment's providers)."""

    providers: dict[str, ProviderConfig]
    aliases: dict[str, Alias]
    circuit: Circuit


def _problems(error: ValidationError, where: str) -> list[str]:
    lines = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {path}: {message}")
    return lines


def _check_references(config: RoutingFile, providers: dict[str, ProviderConfig], where: str) -> list[str]:
    known = set(providers) | set(RESERVED_PROVIDERS)
    problems = []
    for name in config.providers:
        if name in RESERVED_PROVIDERS or "/" in name or not name:
            problems.append(f"{where}: providers.{name}: this name is reserved or has a '/'; choose another")
    for alias, spec in config.aliases.items():
        if "/" in alias:
            problems.append(f"{where}: aliases.{alias}: an alias has no '/' (model ids are provider/name)")
        targets = [(f"deployments.{i}.model", d.model) for i, d in enumerate(spec.deployments)]
        targets += [(f"fallbacks.{i}", f) for i, f in enumerate(spec.fallbacks)]
        for path, target in targets:
            provider = target.partition("/")[0] if "/" in target else None
            if provider is None and target not in config.aliases:
                problems.append(f"{where}: aliases.{alias}.{path}: {target!r} is neither provider/model nor an alias")
            elif provider is not None and provider not in known:
                problems.append(f"{where}: aliases.{alias}.{path}: no provider {provider!r} (known: {sorted(known)})")
    return problems


def load_config(settings: AISettings, local_url: str = "", local_model: str = "") -> RouterConfig:
    """The routing configuration; SettingsError lists every mistake, one per line. `local_url` is where the
    `local` provider (DEVPYNODE_AI_LOCAL_MODEL or _URL) answers, when one is configured."""
    providers = {"ollama": ProviderConfig.model_validate({"type": "ollama", "url": settings.ollama_url})}
    if settings.openai_base_url:
        providers["openai"] = ProviderConfig.model_validate(
            {"type": "openai", "url": settings.openai_base_url, "api_key": settings.openai_api_key.get_secret_value()}
        )
    if local_url:
        providers[LOCAL_PROVIDER] = ProviderConfig.model_validate(
            {"type": "openai", "url": local_url, "models": [local_model] if local_model else []}
        )
    routing = RoutingFile()
    if settings.ai_config is not None:
        where = f"DEVPYNODE_AI_CONFIG ({settings.ai_config})"
        routing = _read(settings.ai_config, where)
        providers.update(routing.providers)
        problems = _check_references(routing, providers, where)
        if local_url and LOCAL_PROVIDER in routing.providers:
            problems.append(
                f"{where}: providers.{LOCAL_PROVIDER}: the name is taken by DEVPYNODE_AI_LOCAL_MODEL (or _URL); "
                "choose another"
            )
        if problems:
            raise SettingsError("\n".join(problems))
    return RouterConfig(providers=providers, aliases=dict(routing.aliases), circuit=routing.circuit)


def _read(path: Path, where: str) -> RoutingFile:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"{where}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SettingsError(f"{where}: not valid YAML{at}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError(f"{where}: must be a mapping with providers, aliases and circuit")
    try:
        return RoutingFile.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError("\n".join(_problems(exc, where))) from None
