"""The AI router over the peer client: the caller's own `authorization` as gRPC metadata, no identity of ours.

The door acts as the client, not for it: the router's edge authenticates the client's token (or personal key)
and applies that user's limits, budgets and ledger, exactly as for a gRPC client. The client address headers
Envoy set are passed on, so per-address limits see the client, not the door.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from devpynode.ai.v1 import ai_pb2, ai_pb2_grpc

from pynode.core import deadlines
from pynode.core.edge import GATEWAY_HEADER
from pynode.core.peers import PeerClient, peer_error
from pynode.door.ports import Caller

LIST_BUDGET_SECONDS = 10.0
EMBED_BUDGET_SECONDS = 120.0
# A generation may stream for a long time; the router bounds its first token and its whole length itself.
GENERATION_BUDGET_SECONDS = 3600.0
PAGE_SIZE = 100
MAX_PAGES = 50  # a router listing more than 5,000 models is a loop, not a catalogue


def metadata_of(caller: Caller) -> list[tuple[str, str]]:
    """The client's credentials and address headers as the router's edge reads them."""
    items = [("authorization", caller.authorization)]
    if caller.request_id:
        items.append(("x-request-id", caller.request_id))
    if caller.forwarded_for:
        items.append(("x-forwarded-for", caller.forwarded_for))
    if caller.gateway:
        items.append((GATEWAY_HEADER, caller.gateway))
    return items


async def all_models(
    page: Callable[[ai_pb2.ListModelsRequest], Awaitable[ai_pb2.ListModelsResponse]],
) -> list[ai_pb2.Model]:
    """Every model ListModels lists, page after page (`page` makes one call, over gRPC or in-process)."""
    found: list[ai_pb2.Model] = []
    token = ""
    for _ in range(MAX_PAGES):
        answer = await page(ai_pb2.ListModelsRequest(page_size=PAGE_SIZE, page_token=token))
        found.extend(answer.models)
        token = answer.next_page_token
        if not token:
            break
    return found


class GrpcRouter(PeerClient):
    """AIRouterService's ListModels, Generate and Embed, as the client that called the door."""

    service = "ai"

    async def models(self, caller: Caller) -> list[ai_pb2.Model]:
        stub = ai_pb2_grpc.AIRouterServiceStub(self.channel)
        return await all_models(
            lambda request: self.unary(
                stub.ListModels(
                    request, metadata=metadata_of(caller), timeout=deadlines.outbound_timeout(LIST_BUDGET_SECONDS)
                )
            )
        )

    async def generate(self, caller: Caller, request: ai_pb2.GenerateRequest) -> AsyncIterator[ai_pb2.GenerateResponse]:
        stub = ai_pb2_grpc.AIRouterServiceStub(self.channel)
        call = stub.Generate(request, metadata=metadata_of(caller), timeout=GENERATION_BUDGET_SECONDS)
        try:
            async for piece in call:
                yield piece
        except grpc.aio.AioRpcError as error:
            raise peer_error(error, self.service) from None
        finally:
            call.cancel()  # the client hung up (or the answer is whole): the router's stream ends at once

    async def embed(self, caller: Caller, request: ai_pb2.EmbedRequest) -> ai_pb2.EmbedResponse:
        stub = ai_pb2_grpc.AIRouterServiceStub(self.channel)
        return await self.unary(
            stub.Embed(request, metadata=metadata_of(caller), timeout=deadlines.outbound_timeout(EMBED_BUDGET_SECONDS))
        )
