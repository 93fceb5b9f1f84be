"""The AI router's settings: model providers and the routing file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from pynode.core.settings import Section, check_url


class AISettings(Section):
    """Providers and routing; each field is `DEVPYNODE_<NAME>`."""

    ollama_url: str = Field("http://127.0.0.1:11434", description="Ollama base URL.")
    openai_base_url: str = Field("", description="OpenAI-compatible API base URL; empty disables it.")
    openai_api_key: SecretStr = Field(SecretStr(""), description="API key for the OpenAI-compatible API.")
    ai_config: Path | None = Field(None, description="YAML routing file (providers, aliases, fallbacks).")

    @field_validator("ollama_url", "openai_base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        return check_url(value, ("http", "https"), "http://host:port or https://host")
