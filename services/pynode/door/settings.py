"""The OpenAI-compatible door's settings: where its HTTP listener binds and how large a request may be.

Named `DEVPYNODE_DOOR_*`, apart from `DEVPYNODE_OPENAI_BASE_URL` / `_API_KEY`, which configure the AI router's
OpenAI-compatible *provider* (the other direction).
"""

from __future__ import annotations

from pydantic import Field

from pynode.core.settings import Section

DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
DEFAULT_HEADERS_SECONDS = 15.0
DEFAULT_BODY_SECONDS = 60.0


class DoorSettings(Section):
    """Each field is `DEVPYNODE_<NAME>`."""

    door_host: str = Field(
        "127.0.0.1", description="Address the door's HTTP listener binds (0.0.0.0 in a container, behind Envoy)."
    )
    door_port: int = Field(
        0,
        ge=-1,
        le=65535,
        description="The door's HTTP port: 0 picks a free one (on a laptop Envoy on DEVPYNODE_HTTP_PORT routes "
        "/v1/models, /v1/chat/completions and /v1/embeddings to it), -1 turns the door off.",
    )
    door_in_process: bool = Field(
        True,
        description="When the AI router runs in this process, call it in-process through its own edge (the same "
        "authentication, API key scopes, limits, metrics and audit as a gRPC call) instead of over loopback gRPC.",
    )
    door_max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest request body; a larger one is refused with 413.",
    )
    door_headers_seconds: float = Field(
        DEFAULT_HEADERS_SECONDS,
        gt=0,
        le=3600,
        description="A connection is closed when a request's headers have not all arrived this many seconds after "
        "it opened or after its previous answer ended: slow headers and idle keep-alive connections alike. An "
        "answer being written (a long token stream) is not bounded by it.",
    )
    door_body_seconds: float = Field(
        DEFAULT_BODY_SECONDS,
        gt=0,
        le=3600,
        description="Longest a request body may take to arrive after its headers; a slower one is answered 408 "
        "and its connection closed.",
    )
