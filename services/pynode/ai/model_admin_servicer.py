"""gRPC edge of model administration: resource names in, domain calls, provider models out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

import grpc
from devpynode.ai.v1 import models_pb2, models_pb2_grpc
from google.protobuf import timestamp_pb2

from pynode.ai.model_admin import ModelAdministration
from pynode.ai.providers.managed import DELETE, LOAD, PULL, UNLOAD, StoredModel
from pynode.core.errors import FieldViolation, InvalidArgument
from pynode.core.paging import offset_page
from pynode.core.principal import current_client, current_principal

_CAPABILITIES = {
    "completion": models_pb2.PROVIDER_MODEL_CAPABILITY_COMPLETION,
    "tools": models_pb2.PROVIDER_MODEL_CAPABILITY_TOOLS,
    "vision": models_pb2.PROVIDER_MODEL_CAPABILITY_VISION,
    "embedding": models_pb2.PROVIDER_MODEL_CAPABILITY_EMBEDDING,
    "thinking": models_pb2.PROVIDER_MODEL_CAPABILITY_THINKING,
    "insert": models_pb2.PROVIDER_MODEL_CAPABILITY_INSERT,
}
_ACTIONS = {
    PULL: models_pb2.PROVIDER_MODEL_ACTION_PULL,
    DELETE: models_pb2.PROVIDER_MODEL_ACTION_DELETE,
    LOAD: models_pb2.PROVIDER_MODEL_ACTION_LOAD,
    UNLOAD: models_pb2.PROVIDER_MODEL_ACTION_UNLOAD,
}
_SHAPE = "providers/{provider}/models/{model} or provider/model"


def parse_name(value: str, field: str = "name") -> tuple[str, str]:
    """(provider, model) from `providers/P/models/M` or the router's id `P/M`."""
    value = value.strip()
    if value.startswith("providers/") and "/models/" in value:
        provider, _, model = value.removeprefix("providers/").partition("/models/")
    else:
        provider, _, model = value.partition("/")
    if not provider or not model or "/" in provider:
        raise InvalidArgument(
            f"{field} must be {_SHAPE}, for example ollama/llama3.2",
            [FieldViolation(field, f"must be {_SHAPE}", "INVALID_MODEL_NAME")],
            reason="INVALID_MODEL_NAME",
        )
    return provider, model


def parse_parent(value: str) -> str | None:
    """The provider of `providers/P`; None for every provider (empty or `providers/-`)."""
    if value in ("", "providers/-"):
        return None
    provider = value.removeprefix("providers/")
    if not value.startswith("providers/") or not provider or "/" in provider:
        raise InvalidArgument(
            "parent must be providers/{provider} or providers/-",
            [FieldViolation("parent", "must be providers/{provider} or providers/-")],
        )
    return provider


def _stamp(when: datetime | None) -> timestamp_pb2.Timestamp | None:
    if when is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


def provider_model_proto(model: StoredModel) -> models_pb2.ProviderModel:
    return models_pb2.ProviderModel(
        name=f"providers/{model.provider}/models/{model.name}",
        model_id=model.model_id,
        provider=model.provider,
        provider_kind=model.kind,
        size_bytes=model.size_bytes,
        family=model.family,
        parameter_size=model.parameter_size,
        quantization=model.quantization,
        format=model.format,
        context_length=model.context_length,
        capabilities=[_CAPABILITIES[c] for c in model.capabilities if c in _CAPABILITIES],
        loaded=model.loaded,
        loaded_size_bytes=model.loaded_size_bytes,
        loaded_vram_bytes=model.loaded_vram_bytes,
        unload_time=_stamp(model.unload_at),
        digest=model.digest,
        modify_time=_stamp(model.modified_at),
        actions=[_ACTIONS[a] for a in model.actions if a in _ACTIONS],
        description=model.description,
        parameters=model.parameters,
        license=model.license,
    )


class ModelAdminServicer(models_pb2_grpc.ModelAdminServiceServicer):
    """devpynode.ai.v1.ModelAdminService (the edge admits administrators only)."""

    def __init__(self, admin: ModelAdministration) -> None:
        self._admin = admin

    async def ListProviderModels(
        self,
        request: models_pb2.ListProviderModelsRequest,
        context: grpc.aio.ServicerContext[models_pb2.ListProviderModelsRequest, models_pb2.ListProviderModelsResponse],
    ) -> models_pb2.ListProviderModelsResponse:
        inventory = await self._admin.inventory(parse_parent(request.parent))
        page, next_token = offset_page(inventory.models, request.page_size, request.page_token)
        return models_pb2.ListProviderModelsResponse(
            provider_models=[provider_model_proto(m) for m in page],
            next_page_token=next_token,
            unreachable=[f"providers/{p}" for p in inventory.unreachable],
        )

    async def GetProviderModel(
        self,
        request: models_pb2.GetProviderModelRequest,
        context: grpc.aio.ServicerContext[models_pb2.GetProviderModelRequest, models_pb2.GetProviderModelResponse],
    ) -> models_pb2.GetProviderModelResponse:
        model = await self._admin.show(*parse_name(request.name))
        return models_pb2.GetProviderModelResponse(provider_model=provider_model_proto(model))

    async def PullProviderModel(
        self,
        request: models_pb2.PullProviderModelRequest,
        context: grpc.aio.ServicerContext[models_pb2.PullProviderModelRequest, models_pb2.PullProviderModelResponse],
    ) -> AsyncIterator[models_pb2.PullProviderModelResponse]:
        provider, name = parse_name(request.name)
        steps = self._admin.pull(current_principal(), current_client(), provider, name)
        async with contextlib.aclosing(steps) as pulling:
            async for step in pulling:
                yield models_pb2.PullProviderModelResponse(
                    status=step.status,
                    digest=step.digest,
                    completed_bytes=step.completed,
                    total_bytes=step.total,
                    done=step.done,
                    provider_model=provider_model_proto(step.model) if step.model else None,
                )

    async def DeleteProviderModel(
        self,
        request: models_pb2.DeleteProviderModelRequest,
        context: grpc.aio.ServicerContext[
            models_pb2.DeleteProviderModelRequest, models_pb2.DeleteProviderModelResponse
        ],
    ) -> models_pb2.DeleteProviderModelResponse:
        await self._admin.delete(current_principal(), current_client(), *parse_name(request.name))
        return models_pb2.DeleteProviderModelResponse()

    async def LoadProviderModel(
        self,
        request: models_pb2.LoadProviderModelRequest,
        context: grpc.aio.ServicerContext[models_pb2.LoadProviderModelRequest, models_pb2.LoadProviderModelResponse],
    ) -> models_pb2.LoadProviderModelResponse:
        model = await self._admin.load(current_principal(), current_client(), *parse_name(request.name))
        return models_pb2.LoadProviderModelResponse(provider_model=provider_model_proto(model))

    async def UnloadProviderModel(
        self,
        request: models_pb2.UnloadProviderModelRequest,
        context: grpc.aio.ServicerContext[
            models_pb2.UnloadProviderModelRequest, models_pb2.UnloadProviderModelResponse
        ],
    ) -> models_pb2.UnloadProviderModelResponse:
        await self._admin.unload(current_principal(), current_client(), *parse_name(request.name))
        return models_pb2.UnloadProviderModelResponse()
