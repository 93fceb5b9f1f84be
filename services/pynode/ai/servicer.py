"""gRPC edge of the AI router: protos in, domain calls, protos out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Literal

import grpc
from devpynode.ai.v1 import ai_pb2, ai_pb2_grpc

from pynode.ai.domain import (
    AUTO,
    CANCELLED,
    EMBEDDINGS,
    ERROR,
    LENGTH,
    NAMED,
    NONE,
    REQUIRED,
    STOP,
    TIME_LIMIT,
    TOOL_CALLS,
    TOOLS,
    VISION,
    Image,
    Message,
    ModelInfo,
    Sampling,
    ToolCall,
    ToolChoice,
    ToolSpec,
    UsageTotal,
)
from pynode.ai.service import AIService, GenerateCommand
from pynode.ai.tools import arguments_violations, tool_violations
from pynode.core.errors import FieldViolation, InvalidArgument
from pynode.core.paging import offset_page
from pynode.core.principal import Principal, current_client, current_principal

_ROLES = {
    ai_pb2.MESSAGE_ROLE_SYSTEM: "system",
    ai_pb2.MESSAGE_ROLE_USER: "user",
    ai_pb2.MESSAGE_ROLE_ASSISTANT: "assistant",
    ai_pb2.MESSAGE_ROLE_TOOL: "tool",
}
_CHOICES = {
    ai_pb2.TOOL_CHOICE_MODE_UNSPECIFIED: AUTO,
    ai_pb2.TOOL_CHOICE_MODE_AUTO: AUTO,
    ai_pb2.TOOL_CHOICE_MODE_NONE: NONE,
    ai_pb2.TOOL_CHOICE_MODE_REQUIRED: REQUIRED,
    ai_pb2.TOOL_CHOICE_MODE_NAMED: NAMED,
}
_CAPABILITIES = {
    TOOLS: ai_pb2.MODEL_CAPABILITY_TOOLS,
    VISION: ai_pb2.MODEL_CAPABILITY_VISION,
    EMBEDDINGS: ai_pb2.MODEL_CAPABILITY_EMBEDDINGS,
}
_FINISH = {
    STOP: ai_pb2.FINISH_REASON_STOP,
    LENGTH: ai_pb2.FINISH_REASON_LENGTH,
    CANCELLED: ai_pb2.FINISH_REASON_CANCELLED,
    ERROR: ai_pb2.FINISH_REASON_ERROR,
    TIME_LIMIT: ai_pb2.FINISH_REASON_TIME_LIMIT,
    TOOL_CALLS: ai_pb2.FINISH_REASON_TOOL_CALLS,
}
# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def command_of(request: ai_pb2.GenerateRequest, address: str = "") -> GenerateCommand:
    """The request as the service takes it; the checks the field rules cannot declare."""
    violations = []
    messages = []
    for i, message in enumerate(request.messages):
        role = _ROLES.get(message.role)
        if role is None:
            violations.append(FieldViolation(f"messages[{i}].role", "must be SYSTEM, USER, ASSISTANT or TOOL"))
        calls = tuple(ToolCall(c.id, c.name, c.arguments_json) for c in message.tool_calls)
        if calls and role != "assistant":
            violations.append(FieldViolation(f"messages[{i}].tool_calls", "only assistant messages call tools"))
        violations += arguments_violations(calls, f"messages[{i}].tool_calls")
        if role == "tool" and not message.tool_call_id:
            violations.append(
                FieldViolation(f"messages[{i}].tool_call_id", "a tool message names its call", "REQUIRED")
            )
        images = tuple(
            Image("", image.data) if image.WhichOneof("source") == "data" else Image("", b"", image.file_id)
            for image in message.images
        )
        if any(not image.data and not image.file_id for image in images):
            violations.append(FieldViolation(f"messages[{i}].images", "each image needs data or a file_id", "REQUIRED"))
        if images and role != "user":
            violations.append(FieldViolation(f"messages[{i}].images", "only user messages carry images"))
        messages.append(Message(role or "user", message.content, calls, message.tool_call_id, images))
    tools = tuple(ToolSpec(t.name, t.description, t.parameters_json) for t in request.tools)
    choice = ToolChoice(_CHOICES.get(request.tool_choice.mode, AUTO), request.tool_choice.name)
    violations += tool_violations(tools, choice)
    options = request.options
    temperature = options.temperature if options.HasField("temperature") else None
    top_p = options.top_p if options.HasField("top_p") else None
    if temperature is not None and not 0 <= temperature <= 2:
        violations.append(FieldViolation("options.temperature", "must be between 0 and 2", "OUT_OF_RANGE"))
    if top_p is not None and not 0 <= top_p <= 1:
        violations.append(FieldViolation("options.top_p", "must be between 0 and 1", "OUT_OF_RANGE"))
    if violations:
        raise InvalidArgument(
            "request has invalid fields: " + "; ".join(f"{v.field}: {v.description}" for v in violations), violations
        )
    sampling = Sampling(
        temperature=temperature,
        top_p=top_p,
        seed=options.seed if options.HasField("seed") else None,
        max_tokens=options.max_tokens,
        stop=tuple(options.stop),
        tokens_per_second=options.tokens_per_second if options.HasField("tokens_per_second") else None,
    )
    return GenerateCommand(
        request.model.strip(),
        tuple(messages),
        sampling,
        tuple(options.fallback_models),
        options.no_cache,
        address,
        tools,
        choice,
    )


def model_proto(model: ModelInfo) -> ai_pb2.Model:
    return ai_pb2.Model(
        id=model.id,
        provider=model.provider,
        available=model.available,
        development=model.development,
        description=model.description,
        capabilities=[_CAPABILITIES[c] for c in model.capabilities if c in _CAPABILITIES],
    )


def _total(total: UsageTotal) -> tuple[int, ai_pb2.Usage]:
    return total.requests, ai_pb2.Usage(prompt_tokens=total.prompt_tokens, completion_tokens=total.completion_tokens)


def _time(request: ai_pb2.GetUsageRequest, field: Literal["start_time", "end_time"]) -> datetime | None:
    if not request.HasField(field):
        return None
    stamp = getattr(request, field)
    if not 0 <= stamp.nanos <= 999_999_999:
        raise InvalidArgument(
            f"{field}.nanos must be 0 to 999999999", [FieldViolation(f"{field}.nanos", "must be 0 to 999999999")]
        )
    if not _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS:
        raise InvalidArgument(
            f"{field} must be between years 1 and 9999",
            [FieldViolation(f"{field}.seconds", "must be between 0001-01-01 and 9999-12-31", "OUT_OF_RANGE")],
        )
    return datetime.fromtimestamp(stamp.seconds, UTC) + timedelta(microseconds=stamp.nanos // 1000)


class AIRouterServicer(ai_pb2_grpc.AIRouterServiceServicer):
    """devpynode.ai.v1.AIRouterService."""

    def __init__(self, service: AIService) -> None:
        self._service = service

    async def ListModels(
        self,
        request: ai_pb2.ListModelsRequest,
        context: grpc.aio.ServicerContext[ai_pb2.ListModelsRequest, ai_pb2.ListModelsResponse],
    ) -> ai_pb2.ListModelsResponse:
        page, next_token = offset_page(await self._service.list_models(), request.page_size, request.page_token)
        return ai_pb2.ListModelsResponse(models=[model_proto(m) for m in page], next_page_token=next_token)

    async def Generate(
        self,
        request: ai_pb2.GenerateRequest,
        context: grpc.aio.ServicerContext[ai_pb2.GenerateRequest, ai_pb2.GenerateResponse],
    ) -> AsyncIterator[ai_pb2.GenerateResponse]:
        caller, address = current_principal(), current_client().address
        async with contextlib.aclosing(self._pieces(caller, request, address)) as pieces:
            async for piece in pieces:
                yield piece

    async def GenerateForUser(
        self,
        request: ai_pb2.GenerateForUserRequest,
        context: grpc.aio.ServicerContext[ai_pb2.GenerateForUserRequest, ai_pb2.GenerateForUserResponse],
    ) -> AsyncIterator[ai_pb2.GenerateForUserResponse]:
        # The edge admitted a service token only; limits, budgets and usage are the named user's.
        user = Principal(request.user_id, "user")
        async with contextlib.aclosing(self._pieces(user, request.request, request.client_address)) as pieces:
            async for piece in pieces:
                yield ai_pb2.GenerateForUserResponse(response=piece)

    async def _pieces(
        self, caller: Principal, request: ai_pb2.GenerateRequest, address: str
    ) -> AsyncGenerator[ai_pb2.GenerateResponse, None]:
        command = command_of(request, address)
        async with contextlib.aclosing(self._service.generate(caller, command)) as generated:
            async for piece in generated:
                if piece.finish_reason is None:
                    response = ai_pb2.GenerateResponse(text=piece.text, model=piece.model)
                    for call in piece.tool_calls:
                        response.tool_calls.add(
                            index=call.index, id=call.id, name=call.name, arguments_json=call.arguments
                        )
                    yield response
                else:
                    yield ai_pb2.GenerateResponse(
                        text=piece.text,
                        model=piece.model,
                        finish_reason=_FINISH[piece.finish_reason],
                        usage=ai_pb2.Usage(
                            prompt_tokens=piece.prompt_tokens, completion_tokens=piece.completion_tokens
                        ),
                        cached=piece.cached,
                    )

    async def Embed(
        self,
        request: ai_pb2.EmbedRequest,
        context: grpc.aio.ServicerContext[ai_pb2.EmbedRequest, ai_pb2.EmbedResponse],
    ) -> ai_pb2.EmbedResponse:
        embedded = await self._service.embed(
            current_principal(),
            request.model.strip(),
            list(request.inputs),
            request.dimensions,
            current_client().address,
        )
        return ai_pb2.EmbedResponse(
            embeddings=[ai_pb2.Embedding(values=vector) for vector in embedded.vectors],
            model=embedded.model,
            usage=ai_pb2.Usage(prompt_tokens=embedded.prompt_tokens),
        )

    async def GetUsage(
        self,
        request: ai_pb2.GetUsageRequest,
        context: grpc.aio.ServicerContext[ai_pb2.GetUsageRequest, ai_pb2.GetUsageResponse],
    ) -> ai_pb2.GetUsageResponse:
        models, users = await self._service.usage(
            current_principal(),
            _time(request, "start_time"),
            _time(request, "end_time"),
            request.user_id,
            request.all_users,
        )
        response = ai_pb2.GetUsageResponse(total=ai_pb2.Usage())
        for total in models:
            requests, usage = _total(total)
            response.models.append(
                ai_pb2.ModelUsage(
                    model=total.key,
                    requests=requests,
                    usage=usage,
                    cached_requests=total.cached_requests,
                    unfinished_requests=total.unfinished_requests,
                )
            )
            response.total.prompt_tokens += total.prompt_tokens
            response.total.completion_tokens += total.completion_tokens
        for total in users:
            requests, usage = _total(total)
            response.users.append(ai_pb2.UserUsage(user_id=total.key, requests=requests, usage=usage))
        if request.by_api_key:
            keys = await self._service.usage_by_key(
                current_principal(),
                _time(request, "start_time"),
                _time(request, "end_time"),
                request.user_id,
                request.all_users,
            )
            for total in keys:
                requests, usage = _total(total)
                response.api_keys.append(ai_pb2.ApiKeyUsage(api_key_id=total.key, requests=requests, usage=usage))
        return response
