"""gRPC edge of single sign-on: AuthService's OIDC RPCs (mixed into AuthServicer) and the admin's view."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from devpynode.auth.v1 import auth_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from pynode.auth.domain import LinkedIdentity
from pynode.auth.oidc.service import OidcService, SsoLogin, StartedFlow
from pynode.core.errors import Unimplemented
from pynode.core.principal import current_principal

_KINDS = {auth_pb2.OIDC_CLIENT_KIND_WEB: "web", auth_pb2.OIDC_CLIENT_KIND_CLI_LOOPBACK: "loopback"}


def _ts(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def identity_proto(identity: LinkedIdentity) -> auth_pb2.LinkedIdentity:
    """A linked identity as the API shows it."""
    return auth_pb2.LinkedIdentity(
        provider=identity.provider,
        issuer=identity.issuer,
        subject=identity.subject,
        email=identity.email,
        linked_at=_ts(identity.linked_at.timestamp()),
        last_login_at=_ts(identity.last_login_at.timestamp()),
    )


def _started(flow: StartedFlow) -> auth_pb2.StartOidcLoginResponse:
    return auth_pb2.StartOidcLoginResponse(
        authorization_url=flow.authorization_url, state=flow.state, expires_at=_ts(flow.expires_at)
    )


def _completed(login: SsoLogin) -> auth_pb2.CompleteOidcLoginResponse:
    from pynode.auth.servicer import tokens_proto, user_proto  # the password RPCs' shapes, shared

    return auth_pb2.CompleteOidcLoginResponse(
        user=user_proto(login.user), tokens=tokens_proto(login.tokens), account_created=login.created
    )


class OidcAdminRpcs:
    """The SSO half of devpynode.auth.v1.UserAdminService."""

    _oidc: OidcService | None

    async def _linked(self, user_id: str) -> tuple[list[LinkedIdentity], bool]:
        if self._oidc is None:
            return [], True
        return await self._oidc.linked(user_id)

    async def ListUserIdentities(
        self,
        request: auth_pb2.ListUserIdentitiesRequest,
        context: grpc.aio.ServicerContext[auth_pb2.ListUserIdentitiesRequest, auth_pb2.ListUserIdentitiesResponse],
    ) -> auth_pb2.ListUserIdentitiesResponse:
        identities, has_password = await self._linked(request.user_id)
        return auth_pb2.ListUserIdentitiesResponse(
            identities=[identity_proto(i) for i in identities], has_password=has_password
        )


class OidcRpcs(OidcAdminRpcs):
    """The SSO half of devpynode.auth.v1.AuthService."""

    def _sso(self) -> OidcService:
        if self._oidc is None:
            raise Unimplemented("single sign-on is not set up on this server", reason="OIDC_NOT_CONFIGURED")
        return self._oidc

    async def ListSignInProviders(
        self,
        request: auth_pb2.ListSignInProvidersRequest,
        context: grpc.aio.ServicerContext[auth_pb2.ListSignInProvidersRequest, auth_pb2.ListSignInProvidersResponse],
    ) -> auth_pb2.ListSignInProvidersResponse:
        listed = self._oidc.list_providers() if self._oidc else []
        return auth_pb2.ListSignInProvidersResponse(
            providers=[
                auth_pb2.SignInProvider(
                    id=c.id, display_name=c.label, device_flow=device, loopback=bool(c.cli_client_id)
                )
                for c, device in listed
            ]
        )

    async def StartOidcLogin(
        self,
        request: auth_pb2.StartOidcLoginRequest,
        context: grpc.aio.ServicerContext[auth_pb2.StartOidcLoginRequest, auth_pb2.StartOidcLoginResponse],
    ) -> auth_pb2.StartOidcLoginResponse:
        flow = await self._sso().start(
            request.provider, _KINDS.get(request.client, ""), request.loopback_port, request.binding_sha256
        )
        return _started(flow)

    async def CompleteOidcLogin(
        self,
        request: auth_pb2.CompleteOidcLoginRequest,
        context: grpc.aio.ServicerContext[auth_pb2.CompleteOidcLoginRequest, auth_pb2.CompleteOidcLoginResponse],
    ) -> auth_pb2.CompleteOidcLoginResponse:
        return _completed(await self._sso().complete(request.callback_query, request.binding))

    async def StartOidcDeviceLogin(
        self,
        request: auth_pb2.StartOidcDeviceLoginRequest,
        context: grpc.aio.ServicerContext[auth_pb2.StartOidcDeviceLoginRequest, auth_pb2.StartOidcDeviceLoginResponse],
    ) -> auth_pb2.StartOidcDeviceLoginResponse:
        device = await self._sso().start_device(request.provider)
        return auth_pb2.StartOidcDeviceLoginResponse(
            flow_id=device.flow_id,
            user_code=device.user_code,
            verification_uri=device.verification_uri,
            verification_uri_complete=device.verification_uri_complete,
            expires_at=_ts(device.expires_at),
        )

    async def AwaitOidcDeviceLogin(
        self,
        request: auth_pb2.AwaitOidcDeviceLoginRequest,
        context: grpc.aio.ServicerContext[auth_pb2.AwaitOidcDeviceLoginRequest, auth_pb2.AwaitOidcDeviceLoginResponse],
    ) -> AsyncIterator[auth_pb2.AwaitOidcDeviceLoginResponse]:
        async for event in self._sso().await_device(request.flow_id):
            if event is None:
                yield auth_pb2.AwaitOidcDeviceLoginResponse(pending=True)
            else:
                yield auth_pb2.AwaitOidcDeviceLoginResponse(completed=_completed(event))

    async def StartOidcLink(
        self,
        request: auth_pb2.StartOidcLinkRequest,
        context: grpc.aio.ServicerContext[auth_pb2.StartOidcLinkRequest, auth_pb2.StartOidcLinkResponse],
    ) -> auth_pb2.StartOidcLinkResponse:
        f = request.flow
        flow = await self._sso().start(
            f.provider,
            _KINDS.get(f.client, ""),
            f.loopback_port,
            f.binding_sha256,
            link_for=current_principal().subject,
        )
        return auth_pb2.StartOidcLinkResponse(flow=_started(flow))

    async def LinkOidcIdentity(
        self,
        request: auth_pb2.LinkOidcIdentityRequest,
        context: grpc.aio.ServicerContext[auth_pb2.LinkOidcIdentityRequest, auth_pb2.LinkOidcIdentityResponse],
    ) -> auth_pb2.LinkOidcIdentityResponse:
        linked = await self._sso().link(current_principal(), request.callback_query, request.binding)
        return auth_pb2.LinkOidcIdentityResponse(identity=identity_proto(linked))

    async def ListLinkedIdentities(
        self,
        request: auth_pb2.ListLinkedIdentitiesRequest,
        context: grpc.aio.ServicerContext[auth_pb2.ListLinkedIdentitiesRequest, auth_pb2.ListLinkedIdentitiesResponse],
    ) -> auth_pb2.ListLinkedIdentitiesResponse:
        identities, has_password = await self._linked(current_principal().subject)
        return auth_pb2.ListLinkedIdentitiesResponse(
            identities=[identity_proto(i) for i in identities], has_password=has_password
        )

    async def UnlinkOidcIdentity(
        self,
        request: auth_pb2.UnlinkOidcIdentityRequest,
        context: grpc.aio.ServicerContext[auth_pb2.UnlinkOidcIdentityRequest, auth_pb2.UnlinkOidcIdentityResponse],
    ) -> auth_pb2.UnlinkOidcIdentityResponse:
        await self._sso().unlink(current_principal(), request.issuer, request.subject)
        return auth_pb2.UnlinkOidcIdentityResponse()

    async def SetPassword(
        self,
        request: auth_pb2.SetPasswordRequest,
        context: grpc.aio.ServicerContext[auth_pb2.SetPasswordRequest, auth_pb2.SetPasswordResponse],
    ) -> auth_pb2.SetPasswordResponse:
        await self._sso().set_password(current_principal(), request.new_password)
        return auth_pb2.SetPasswordResponse()
