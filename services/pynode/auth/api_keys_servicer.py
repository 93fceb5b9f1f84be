"""gRPC edge of the personal API keys: protos in, ApiKeyService calls, protos out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
from devpynode.auth.v1 import api_keys_pb2, api_keys_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from pynode.auth.api_keys import ApiKeyService
from pynode.auth.domain import ApiKey
from pynode.core import api_keys as contract
from pynode.core.principal import current_principal


def _ts(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def api_key_proto(key: ApiKey) -> api_keys_pb2.ApiKey:
    """A key as the API shows it: never its secret nor the secret's hash."""
    shown = api_keys_pb2.ApiKey(
        id=str(key.id),
        user_id=str(key.user_id),
        name=key.name,
        scope=contract.scope_value(key.scope),
        create_time=_ts(key.created_at),
        prefix=contract.display_prefix(key.id),
    )
    if key.expires_at is not None:
        shown.expire_time.CopyFrom(_ts(key.expires_at))
    if key.revoked_at is not None:
        shown.revoke_time.CopyFrom(_ts(key.revoked_at))
    if key.last_used_at is not None:
        shown.last_use_time.CopyFrom(_ts(key.last_used_at))
    return shown


class ApiKeyServicer(api_keys_pb2_grpc.ApiKeyServiceServicer):
    """devpynode.auth.v1.ApiKeyService."""

    def __init__(self, service: ApiKeyService) -> None:
        self._service = service

    async def CreateApiKey(
        self,
        request: api_keys_pb2.CreateApiKeyRequest,
        context: grpc.aio.ServicerContext[api_keys_pb2.CreateApiKeyRequest, api_keys_pb2.CreateApiKeyResponse],
    ) -> api_keys_pb2.CreateApiKeyResponse:
        expires = request.expire_time.ToDatetime(tzinfo=UTC) if request.HasField("expire_time") else None
        key, secret = await self._service.create(
            current_principal(), request.name, contract.scope_name(request.scope), expires
        )
        return api_keys_pb2.CreateApiKeyResponse(api_key=api_key_proto(key), secret=secret)

    async def ListApiKeys(
        self,
        request: api_keys_pb2.ListApiKeysRequest,
        context: grpc.aio.ServicerContext[api_keys_pb2.ListApiKeysRequest, api_keys_pb2.ListApiKeysResponse],
    ) -> api_keys_pb2.ListApiKeysResponse:
        keys, next_token = await self._service.page(
            current_principal().subject, request.page_size, request.page_token, request.active_only
        )
        return api_keys_pb2.ListApiKeysResponse(api_keys=[api_key_proto(k) for k in keys], next_page_token=next_token)

    async def RevokeApiKey(
        self,
        request: api_keys_pb2.RevokeApiKeyRequest,
        context: grpc.aio.ServicerContext[api_keys_pb2.RevokeApiKeyRequest, api_keys_pb2.RevokeApiKeyResponse],
    ) -> api_keys_pb2.RevokeApiKeyResponse:
        caller = current_principal()
        key = await self._service.revoke(caller, caller.subject, request.api_key_id)
        return api_keys_pb2.RevokeApiKeyResponse(api_key=api_key_proto(key))

    async def ListUserApiKeys(
        self,
        request: api_keys_pb2.ListUserApiKeysRequest,
        context: grpc.aio.ServicerContext[api_keys_pb2.ListUserApiKeysRequest, api_keys_pb2.ListUserApiKeysResponse],
    ) -> api_keys_pb2.ListUserApiKeysResponse:
        keys, next_token = await self._service.page(
            str(uuid.UUID(request.user_id)), request.page_size, request.page_token, request.active_only
        )
        return api_keys_pb2.ListUserApiKeysResponse(
            api_keys=[api_key_proto(k) for k in keys], next_page_token=next_token
        )

    async def RevokeUserApiKey(
        self,
        request: api_keys_pb2.RevokeUserApiKeyRequest,
        context: grpc.aio.ServicerContext[api_keys_pb2.RevokeUserApiKeyRequest, api_keys_pb2.RevokeUserApiKeyResponse],
    ) -> api_keys_pb2.RevokeUserApiKeyResponse:
        owner = str(uuid.UUID(request.user_id))  # the stored spelling
        key = await self._service.revoke(current_principal(), owner, request.api_key_id)
        return api_keys_pb2.RevokeUserApiKeyResponse(api_key=api_key_proto(key))

    async def VerifyApiKey(
        self,
        request: api_keys_pb2.VerifyApiKeyRequest,
        context: grpc.aio.ServicerContext[api_keys_pb2.VerifyApiKeyRequest, api_keys_pb2.VerifyApiKeyResponse],
    ) -> api_keys_pb2.VerifyApiKeyResponse:
        holder = await self._service.verify(request.secret, request.client_address)
        answer = api_keys_pb2.VerifyApiKeyResponse(
            api_key_id=holder.key_id, user_id=holder.user_id, role=holder.role, scope=contract.scope_value(holder.scope)
        )
        if holder.expires_at is not None:
            answer.expire_time.FromSeconds(int(holder.expires_at))
        return answer

    async def ReportApiKeyRefusal(
        self,
        request: api_keys_pb2.ReportApiKeyRefusalRequest,
        context: grpc.aio.ServicerContext[
            api_keys_pb2.ReportApiKeyRefusalRequest, api_keys_pb2.ReportApiKeyRefusalResponse
        ],
    ) -> api_keys_pb2.ReportApiKeyRefusalResponse:
        holder = contract.KeyHolder(request.api_key_id, request.user_id, "", "", None)
        await self._service.refused(holder, request.method, request.reason, request.client_address)
        return api_keys_pb2.ReportApiKeyRefusalResponse()
