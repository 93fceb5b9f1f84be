"""gRPC edge of the auth service: protos in, domain calls, protos out."""

from __future__ import annotations

import grpc
from devpynode.auth.v1 import api_keys_pb2, auth_pb2, auth_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from pynode.auth.domain import AuditEvent, IssuedTokens, Profile, User
from pynode.auth.keys import SigningKeyring
from pynode.auth.oidc.service import OidcService
from pynode.auth.oidc.servicer import OidcAdminRpcs, OidcRpcs
from pynode.auth.service import AuthService
from pynode.core.api_keys import scope_value
from pynode.core.principal import current_client, current_principal

_ROLE_TO_PROTO = {"user": auth_pb2.ROLE_USER, "admin": auth_pb2.ROLE_ADMIN}
_ROLE_FROM_PROTO = {auth_pb2.ROLE_USER: "user", auth_pb2.ROLE_ADMIN: "admin"}


def _ts(seconds: float) -> Timestamp:
    whole = int(seconds // 1)
    return Timestamp(seconds=whole, nanos=int((seconds - whole) * 1e9))


def user_proto(user: User | Profile) -> auth_pb2.User:
    """An account as the API shows it (never the password hash)."""
    return auth_pb2.User(
        id=str(user.id),
        email=user.email,
        display_name=user.display_name,
        role=_ROLE_TO_PROTO.get(user.role, auth_pb2.ROLE_UNSPECIFIED),
        disabled=user.disabled,
        created_at=_ts(user.created_at.timestamp()),
        updated_at=_ts(user.updated_at.timestamp()),
    )


def audit_proto(event: AuditEvent) -> auth_pb2.AuditEvent:
    """An audit event as the API shows it."""
    return auth_pb2.AuditEvent(
        id=event.id,
        time=_ts(event.at.timestamp()),
        kind=event.kind,
        actor=event.actor,
        user_id=event.subject,
        client_address=event.address,
        request_id=event.request_id,
        details={k: str(v) for k, v in event.details.items()},
    )


def tokens_proto(tokens: IssuedTokens) -> auth_pb2.TokenPair:
    return auth_pb2.TokenPair(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        access_token_expires_at=_ts(tokens.access_expires_at),
        refresh_token_expires_at=_ts(tokens.refresh_expires_at),
    )


class AuthServicer(OidcRpcs, auth_pb2_grpc.AuthServiceServicer):
    """devpynode.auth.v1.AuthService (its single sign-on RPCs are in OidcRpcs)."""

    def __init__(self, service: AuthService, keyring: SigningKeyring, oidc: OidcService | None = None) -> None:
        self._service = service
        self._keyring = keyring
        self._oidc = oidc

    async def Register(
        self,
        request: auth_pb2.RegisterRequest,
        context: grpc.aio.ServicerContext[auth_pb2.RegisterRequest, auth_pb2.RegisterResponse],
    ) -> auth_pb2.RegisterResponse:
        user, tokens = await self._service.register(
            request.email, request.password, request.display_name, current_client()
        )
        return auth_pb2.RegisterResponse(user=user_proto(user), tokens=tokens_proto(tokens))

    async def Login(
        self,
        request: auth_pb2.LoginRequest,
        context: grpc.aio.ServicerContext[auth_pb2.LoginRequest, auth_pb2.LoginResponse],
    ) -> auth_pb2.LoginResponse:
        user, tokens = await self._service.login(request.email, request.password, current_client())
        return auth_pb2.LoginResponse(user=user_proto(user), tokens=tokens_proto(tokens))

    async def RefreshToken(
        self,
        request: auth_pb2.RefreshTokenRequest,
        context: grpc.aio.ServicerContext[auth_pb2.RefreshTokenRequest, auth_pb2.RefreshTokenResponse],
    ) -> auth_pb2.RefreshTokenResponse:
        tokens = await self._service.refresh(request.refresh_token, current_client())
        return auth_pb2.RefreshTokenResponse(tokens=tokens_proto(tokens))

    async def Logout(
        self,
        request: auth_pb2.LogoutRequest,
        context: grpc.aio.ServicerContext[auth_pb2.LogoutRequest, auth_pb2.LogoutResponse],
    ) -> auth_pb2.LogoutResponse:
        await self._service.logout(current_principal(), request.all_sessions)
        return auth_pb2.LogoutResponse()

    async def GetCurrentUser(
        self,
        request: auth_pb2.GetCurrentUserRequest,
        context: grpc.aio.ServicerContext[auth_pb2.GetCurrentUserRequest, auth_pb2.GetCurrentUserResponse],
    ) -> auth_pb2.GetCurrentUserResponse:
        current = await self._service.current_user(current_principal())
        user = user_proto(current.profile)
        user.role = _ROLE_TO_PROTO.get(current.acting_role, auth_pb2.ROLE_UNSPECIFIED)
        return auth_pb2.GetCurrentUserResponse(
            user=user,
            account_role=_ROLE_TO_PROTO.get(current.profile.role, auth_pb2.ROLE_UNSPECIFIED),
            api_key_scope=(
                scope_value(current.api_key_scope) if current.api_key_scope else api_keys_pb2.API_KEY_SCOPE_UNSPECIFIED
            ),
        )

    async def LookupUser(
        self,
        request: auth_pb2.LookupUserRequest,
        context: grpc.aio.ServicerContext[auth_pb2.LookupUserRequest, auth_pb2.LookupUserResponse],
    ) -> auth_pb2.LookupUserResponse:
        user_id, display_name = await self._service.lookup_user(request.email, request.user_id)
        return auth_pb2.LookupUserResponse(user_id=user_id, display_name=display_name)

    async def RecordAuditEvent(
        self,
        request: auth_pb2.RecordAuditEventRequest,
        context: grpc.aio.ServicerContext[auth_pb2.RecordAuditEventRequest, auth_pb2.RecordAuditEventResponse],
    ) -> auth_pb2.RecordAuditEventResponse:
        await self._service.audit.record_reported(
            current_principal(),
            request.kind,
            request.actor,
            request.user_id,
            request.client_address,
            dict(request.details),
        )
        return auth_pb2.RecordAuditEventResponse()

    async def ChangePassword(
        self,
        request: auth_pb2.ChangePasswordRequest,
        context: grpc.aio.ServicerContext[auth_pb2.ChangePasswordRequest, auth_pb2.ChangePasswordResponse],
    ) -> auth_pb2.ChangePasswordResponse:
        await self._service.change_password(current_principal(), request.current_password, request.new_password)
        return auth_pb2.ChangePasswordResponse()

    async def ListSessions(
        self,
        request: auth_pb2.ListSessionsRequest,
        context: grpc.aio.ServicerContext[auth_pb2.ListSessionsRequest, auth_pb2.ListSessionsResponse],
    ) -> auth_pb2.ListSessionsResponse:
        views, next_token = await self._service.list_sessions(
            current_principal(), request.page_size, request.page_token
        )
        return auth_pb2.ListSessionsResponse(
            sessions=[
                auth_pb2.Session(
                    id=v.session.id,
                    created_at=_ts(v.session.created_at),
                    last_used_at=_ts(v.session.last_used_at),
                    expires_at=_ts(v.session.expires_at),
                    user_agent=v.session.user_agent,
                    ip_address=v.session.ip_address,
                    current=v.current,
                )
                for v in views
            ],
            next_page_token=next_token,
        )

    async def RevokeSession(
        self,
        request: auth_pb2.RevokeSessionRequest,
        context: grpc.aio.ServicerContext[auth_pb2.RevokeSessionRequest, auth_pb2.RevokeSessionResponse],
    ) -> auth_pb2.RevokeSessionResponse:
        await self._service.revoke_session(current_principal(), request.session_id)
        return auth_pb2.RevokeSessionResponse()

    async def GetJwks(
        self,
        request: auth_pb2.GetJwksRequest,
        context: grpc.aio.ServicerContext[auth_pb2.GetJwksRequest, auth_pb2.GetJwksResponse],
    ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.JsonWebKey(**jwk) for jwk in self._keyring.jwks()])

    async def IssueServiceToken(
        self,
        request: auth_pb2.IssueServiceTokenRequest,
        context: grpc.aio.ServicerContext[auth_pb2.IssueServiceTokenRequest, auth_pb2.IssueServiceTokenResponse],
    ) -> auth_pb2.IssueServiceTokenResponse:
        token, expires = await self._service.issue_service_token(
            request.service_name, request.service_secret, current_client()
        )
        return auth_pb2.IssueServiceTokenResponse(access_token=token, expires_at=_ts(expires))


class UserAdminServicer(OidcAdminRpcs, auth_pb2_grpc.UserAdminServiceServicer):
    """devpynode.auth.v1.UserAdminService (admin only, declared in the proto)."""

    def __init__(self, service: AuthService, oidc: OidcService | None = None) -> None:
        self._service = service
        self._oidc = oidc

    async def ListUsers(
        self,
        request: auth_pb2.ListUsersRequest,
        context: grpc.aio.ServicerContext[auth_pb2.ListUsersRequest, auth_pb2.ListUsersResponse],
    ) -> auth_pb2.ListUsersResponse:
        users, next_token = await self._service.list_users(request.page_size, request.page_token)
        return auth_pb2.ListUsersResponse(users=[user_proto(u) for u in users], next_page_token=next_token)

    async def UpdateUser(
        self,
        request: auth_pb2.UpdateUserRequest,
        context: grpc.aio.ServicerContext[auth_pb2.UpdateUserRequest, auth_pb2.UpdateUserResponse],
    ) -> auth_pb2.UpdateUserResponse:
        role = _ROLE_FROM_PROTO.get(request.role, "invalid") if request.HasField("role") else None
        disabled = request.disabled if request.HasField("disabled") else None
        user = await self._service.update_user(current_principal(), request.user_id, role, disabled)
        return auth_pb2.UpdateUserResponse(user=user_proto(user))

    async def ListAuditEvents(
        self,
        request: auth_pb2.ListAuditEventsRequest,
        context: grpc.aio.ServicerContext[auth_pb2.ListAuditEventsRequest, auth_pb2.ListAuditEventsResponse],
    ) -> auth_pb2.ListAuditEventsResponse:
        events, next_token = await self._service.list_audit_events(
            request.page_size, request.page_token, request.user_id, request.kind
        )
        return auth_pb2.ListAuditEventsResponse(events=[audit_proto(e) for e in events], next_page_token=next_token)
