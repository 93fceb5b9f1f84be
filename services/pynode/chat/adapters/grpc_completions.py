"""Completions over the AI router's GenerateForUser (service identity, usage counted for the user)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import grpc
from devpynode.ai.v1 import ai_pb2, ai_pb2_grpc

from pynode.chat.domain import TIME_LIMIT, TOOL_CALLS, ToolCall, ToolSpec
from pynode.chat.ports import CompletionPiece, PromptMessage
from pynode.core.peers import PeerClient, peer_error

_ROLES = {
    "system": ai_pb2.MESSAGE_ROLE_SYSTEM,
    "user": ai_pb2.MESSAGE_ROLE_USER,
    "assistant": ai_pb2.MESSAGE_ROLE_ASSISTANT,
    "tool": ai_pb2.MESSAGE_ROLE_TOOL,
}
_FINISH = {
    ai_pb2.FINISH_REASON_STOP: "stop",
    ai_pb2.FINISH_REASON_LENGTH: "length",
    ai_pb2.FINISH_REASON_CANCELLED: "cancelled",
    ai_pb2.FINISH_REASON_ERROR: "error",
    # The router's longest generation time: the answer is complete as far as it got (not a model "stop").
    ai_pb2.FINISH_REASON_TIME_LIMIT: TIME_LIMIT,
    ai_pb2.FINISH_REASON_TOOL_CALLS: TOOL_CALLS,
}
ADDRESS_MAX = 64  # GenerateForUserRequest.client_address's limit
LIST_BUDGET_SECONDS = 5.0
# A generation may stream for a long time; the router bounds the wait for its first token itself.
GENERATION_BUDGET_SECONDS = 3600.0


def _message(message: PromptMessage) -> ai_pb2.ChatMessage:
    return ai_pb2.ChatMessage(
        role=_ROLES[message.role],
        content=message.content,
        tool_calls=[ai_pb2.ToolCall(id=c.id, name=c.name, arguments_json=c.arguments) for c in message.tool_calls],
        tool_call_id=message.tool_call_id,
        images=[ai_pb2.Image(data=data) for data in message.images],
    )


class _Calls:
    """Tool calls put together from the router's pieces (id and name first, then argument fragments)."""

    def __init__(self) -> None:
        self.calls: dict[int, list[str]] = {}

    def add(self, piece: ai_pb2.ToolCallDelta) -> None:
        call = self.calls.setdefault(piece.index, ["", "", ""])
        call[0] = piece.id or call[0]
        call[1] = piece.name or call[1]
        call[2] += piece.arguments_json

    def whole(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(*self.calls[i]) for i in sorted(self.calls))


class GrpcCompletions(PeerClient):
    """Streams an answer from the AI router for a named user."""

    service = "ai"

    async def known_model(self, model: str) -> bool:
        stub = ai_pb2_grpc.AIRouterServiceStub(self.channel)
        token = ""
        while True:
            options = await self.options(as_user=True, budget_seconds=LIST_BUDGET_SECONDS)
            page = await self.unary(
                stub.ListModels(ai_pb2.ListModelsRequest(page_size=100, page_token=token), **options)
            )
            if any(m.id == model for m in page.models):
                return True
            token = page.next_page_token
            if not token:
                return False

    async def generate(
        self,
        user_id: str,
        model: str,
        messages: list[PromptMessage],
        client_address: str = "",
        tools: tuple[ToolSpec, ...] = (),
    ) -> AsyncGenerator[CompletionPiece, None]:
        stub = ai_pb2_grpc.AIRouterServiceStub(self.channel)
        request = ai_pb2.GenerateForUserRequest(
            user_id=user_id,
            client_address=client_address[:ADDRESS_MAX],
            request=ai_pb2.GenerateRequest(
                model=model,
                messages=[_message(m) for m in messages],
                tools=[
                    ai_pb2.Tool(name=t.name, description=t.description, parameters_json=t.parameters) for t in tools
                ],
            ),
        )
        options = await self.options(as_user=False, budget_seconds=GENERATION_BUDGET_SECONDS)
        call = stub.GenerateForUser(request, **options)
        calls = _Calls()
        try:
            async for wrapped in call:
                piece = wrapped.response
                for delta in piece.tool_calls:
                    calls.add(delta)
                if piece.finish_reason:
                    yield CompletionPiece(
                        piece.text,
                        piece.model,
                        _FINISH.get(piece.finish_reason, "stop"),
                        piece.usage.prompt_tokens,
                        piece.usage.completion_tokens,
                        calls.whole(),
                    )
                else:
                    yield CompletionPiece(piece.text, piece.model)
        except grpc.aio.AioRpcError as error:
            raise peer_error(error, self.service) from None
        finally:
            call.cancel()  # a cancelled generation ends the router's stream (and its provider's) at once
