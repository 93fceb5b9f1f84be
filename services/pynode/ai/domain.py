"""AI router domain types: prompts, stream pieces, models, and the usage of a generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Finish reasons as the ledger stores them (the proto's FinishReason, lower-cased).
STOP, LENGTH, CANCELLED, ERROR, TIME_LIMIT = "stop", "length", "cancelled", "error", "time_limit"
TOOL_CALLS = "tool_calls"

# What a model can do beyond text chat (the routing configuration's words).
TOOLS, VISION, EMBEDDINGS = "tools", "vision", "embeddings"
CAPABILITIES = (TOOLS, VISION, EMBEDDINGS)

# Tool choice modes.
AUTO, NONE, REQUIRED, NAMED = "auto", "none", "required", "named"


@dataclass(frozen=True)
class ToolCall:
    """A whole call the model made: `arguments` is JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Image:
    """A picture for a vision model: its bytes and the media type detected from them (or, until the router
    reads it, only the id of a file holding it)."""

    media_type: str
    data: bytes
    file_id: str = ""


@dataclass(frozen=True)
class Message:
    """One message of a prompt: role is system, user, assistant or tool."""

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant message's calls
    tool_call_id: str = ""  # a tool message's call
    images: tuple[Image, ...] = ()  # a user message's pictures


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call: `parameters` is a JSON Schema as JSON text (empty: none)."""

    name: str
    description: str = ""
    parameters: str = ""


@dataclass(frozen=True)
class ToolChoice:
    """Whether (auto, none, required) or which (named, with `name`) tool the model must call."""

    mode: str = AUTO
    name: str = ""


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call: the first piece of call `index` has its id and name, later ones more arguments."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class Sampling:
    """How to sample; None leaves the model's default."""

    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    max_tokens: int = 0
    stop: tuple[str, ...] = ()
    tokens_per_second: int | None = None  # the built-in model's pace (None: its default); providers ignore it

    @property
    def deterministic(self) -> bool:
        """Whether the same request gives the same answer (so a completed one may be cached)."""
        return self.seed is not None or self.temperature == 0


@dataclass(frozen=True)
class Prompt:
    """What a provider is asked: the model's own name (without the provider) and the conversation."""

    model: str
    messages: tuple[Message, ...]
    sampling: Sampling
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)

    def needs(self) -> set[str]:
        """The capabilities answering this prompt takes."""
        needed = set()
        if self.tools:
            needed.add(TOOLS)
        if any(m.images for m in self.messages):
            needed.add(VISION)
        return needed


@dataclass(frozen=True)
class Delta:
    """Text a provider produced: `tokens` tokens of it (providers hand over what one network read held), and
    pieces of tool calls."""

    text: str
    tokens: int = 1
    tool_calls: tuple[ToolCallDelta, ...] = ()


@dataclass(frozen=True)
class Finished:
    """A provider's last word: why it stopped and its own token counts (None when it gave none)."""

    reason: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


Chunk = Delta | Finished


@dataclass(frozen=True)
class ModelInfo:
    """A model the router can call."""

    id: str
    provider: str
    available: bool
    development: bool = False
    description: str = ""
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Embeddings:
    """A provider's vectors for a batch of texts, and the tokens it read (None when it gave no count)."""

    vectors: list[list[float]]
    prompt_tokens: int | None = None


@dataclass
class Generation:
    """One generation's usage as the ledger keeps it."""

    user_id: str
    model: str
    deployment: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ERROR
    cached: bool = False
    time_to_first_token_ms: float | None = None
    duration_ms: float = 0.0
    created_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)
    api_key_id: str = ""  # the personal API key the caller used; "" for a signed-in session


@dataclass(frozen=True)
class UsageTotal:
    """Usage summed over a group of generations (a model, or a user)."""

    key: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_requests: int = 0
    unfinished_requests: int = 0
