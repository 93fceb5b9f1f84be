"""The AI router in this process, called through its own edge without the loopback gRPC hop (`core.local_calls`).

The same calls as `grpc_router` with the same metadata (the client's `authorization`, request id and address
headers), so the router's edge authenticates, limits, meters, logs and audits them exactly as it does a gRPC
call; only the serialising and the loopback connection are gone. While this process's server is not serving
(starting, or stopping) the gRPC adapter is used, which refuses as a closed listener does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from devpynode.ai.v1 import ai_pb2

from pynode.core import deadlines
from pynode.core.local_calls import LocalCalls
from pynode.core.peers import Peers
from pynode.door.adapters.grpc_router import (
    EMBED_BUDGET_SECONDS,
    GENERATION_BUDGET_SECONDS,
    LIST_BUDGET_SECONDS,
    GrpcRouter,
    all_models,
    metadata_of,
)
from pynode.door.ports import Caller

_SERVICE = "/devpynode.ai.v1.AIRouterService"
LIST_MODELS = f"{_SERVICE}/ListModels"
GENERATE = f"{_SERVICE}/Generate"
EMBED = f"{_SERVICE}/Embed"


class LocalRouter:
    """AIRouterService's ListModels, Generate and Embed, run in-process as the client that called the door."""

    service = "ai"

    def __init__(self, peers: Peers, remote: GrpcRouter) -> None:
        self._peers = peers
        self._remote = remote

    def _calls(self) -> LocalCalls | None:
        calls = self._peers.local_calls
        return calls if calls is not None and calls.serves(GENERATE) else None

    async def models(self, caller: Caller) -> list[ai_pb2.Model]:
        calls = self._calls()
        if calls is None:
            return await self._remote.models(caller)
        return await all_models(
            lambda request: calls.unary(
                self.service, LIST_MODELS, request, metadata_of(caller), deadlines.outbound_timeout(LIST_BUDGET_SECONDS)
            )
        )

    async def generate(self, caller: Caller, request: ai_pb2.GenerateRequest) -> AsyncIterator[ai_pb2.GenerateResponse]:
        calls = self._calls()
        pieces: Any = (
            self._remote.generate(caller, request)
            if calls is None
            else calls.stream(self.service, GENERATE, request, metadata_of(caller), GENERATION_BUDGET_SECONDS)
        )
        try:
            async for piece in pieces:
                yield piece
        finally:
            await pieces.aclose()  # the client hung up: the router's stream ends now

    async def embed(self, caller: Caller, request: ai_pb2.EmbedRequest) -> ai_pb2.EmbedResponse:
        calls = self._calls()
        if calls is None:
            return await self._remote.embed(caller, request)
        answer: ai_pb2.EmbedResponse = await calls.unary(
            self.service, EMBED, request, metadata_of(caller), deadlines.outbound_timeout(EMBED_BUDGET_SECONDS)
        )
        return answer
