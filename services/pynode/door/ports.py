"""What the door needs from the mesh: the AI router, called with the client's own credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from devpynode.ai.v1 import ai_pb2


@dataclass(frozen=True)
class Caller:
    """What the door passes on from an HTTP request, untouched: the client's `Authorization` header (an access
    token or a personal API key; the router's edge checks it) and the headers that say who the client is."""

    authorization: str
    request_id: str = ""
    forwarded_for: str = ""
    gateway: str = ""  # the laptop gateway's secret header, which makes the router believe `forwarded_for`


class Router(Protocol):
    """The AI router's RPCs the door relays."""

    async def models(self, caller: Caller) -> list[ai_pb2.Model]:
        """Every model and alias the router lists, all pages."""

    def generate(self, caller: Caller, request: ai_pb2.GenerateRequest) -> AsyncIterator[ai_pb2.GenerateResponse]:
        """The router's stream; closing the iterator cancels the router's call."""

    async def embed(self, caller: Caller, request: ai_pb2.EmbedRequest) -> ai_pb2.EmbedResponse:
        """One batch of vectors."""
