"""Calls from one service to another: channels, identity, request ids, deadlines and error mapping.

A service reaches another only through a peer client port of its own (say `chat/ports.py: Completions`)
whose gRPC adapter extends `PeerClient`. The channel goes to the address in settings
(`DEVPYNODE_<SERVICE>_ADDRESS`) or, when the callee runs in this process, to this process's own port:
the call then crosses the same edge (authentication, validation, limits, metrics) either way, so
behaviour is the same co-located or remote.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from pynode.core import deadlines, principal, status, tls, tracing
from pynode.core.errors import DomainError, Unauthenticated, Unavailable
from pynode.core.settings import MeshSettings, SettingsError, address_field, env_name

if TYPE_CHECKING:
    from pynode.core.local_calls import LocalCalls

log = logging.getLogger("pynode.peers")

T = TypeVar("T")

# Service tokens are renewed when less than this share of their lifetime is left.
RENEW_AT_FRACTION = 0.2
# How long an outbound call may take when its caller set no deadline (and no smaller budget applies).
DEFAULT_BUDGET_SECONDS = 30.0

ServiceTokenFetch = Callable[[grpc.aio.Channel, float], Awaitable[tuple[str, float]]]


class ServiceTokens:
    """This process's service token, fetched from auth (IssueServiceToken) and renewed before it expires.

    `fetch(channel, timeout)` returns (token, expires_at); the identity kernel owns that call (see
    `pynode.core.identity.service_token_fetch`), this class only schedules it; `issuer` is the module
    that answers it (named in errors). Concurrent callers share one renewal."""

    def __init__(self, fetch: ServiceTokenFetch, issuer: str = "token issuer") -> None:
        self._fetch = fetch
        self.issuer = issuer
        self._token = ""
        self._renew_at = 0.0
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self, channel: grpc.aio.Channel) -> str:
        if self._token and time.time() < self._renew_at:
            return self._token
        async with self._lock:
            now = time.time()
            if not self._token or now >= self._renew_at:
                try:
                    token, expires = await self._fetch(channel, deadlines.outbound_timeout(5.0))
                except grpc.aio.AioRpcError as error:
                    if self._token and now < self._expires_at:  # the old one still works: use it, retry later
                        log.warning("service token renewal failed (%s); using the current one", error.code().name)
                        self._renew_at = now + 1.0
                        return self._token
                    raise peer_error(error, self.issuer) from None
                self._token, self._expires_at = token, expires
                self._renew_at = now + (expires - now) * (1 - RENEW_AT_FRACTION)
        return self._token


class Peers:
    """Channels to the other services of the mesh, one per callee, opened on first use."""

    def __init__(self, mesh: MeshSettings, local_services: set[str], addresses: Mapping[str, str]) -> None:
        self._addresses = dict(addresses)  # module name -> its DEVPYNODE_<NAME>_ADDRESS ("" when unset)
        self._credentials = tls.channel_credentials(mesh.tls_ca_file, mesh.tls_cert_file, mesh.tls_key_file)
        self._local = set(local_services)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.local_address = ""  # this process's own gRPC address, set when the server has bound it
        # Set by the app once the identity kernel's token call and its issuer are known.
        self.service_tokens: ServiceTokens | None = None
        # This process's own edge-wrapped handlers while its server serves (set and cleared by the server): a
        # caller that may skip the loopback hop (the door) calls them in-process through the same edge.
        self.local_calls: LocalCalls | None = None

    def is_local(self, service: str) -> bool:
        """Whether `service` runs in this process."""
        return service in self._local

    def address(self, service: str) -> str:
        """Where `service` answers: this process, or its address setting."""
        if self.is_local(service):
            if not self.local_address:
                raise Unavailable(f"the {service} service in this process is not serving yet; retry", retry_after=0.5)
            return self.local_address
        configured = self._addresses.get(service, "")
        if not configured:
            raise SettingsError(
                f"{env_name(address_field(service))}: required when the {service} service runs in another process"
            )
        return configured

    def require(self, service: str) -> None:
        """Fail at start-up, not at the first call, when a needed peer cannot be found."""
        if not self.is_local(service):
            self.address(service)

    def channel(self, service: str) -> grpc.aio.Channel:
        """The channel to `service` (opened on first use, shared afterwards)."""
        found = self._channels.get(service)
        if found is None:
            options = [("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_permit_without_calls", 0)]
            traced = tracing.client_interceptors() or None  # a client span and `traceparent` per call when on
            if self._credentials is not None:
                found = grpc.aio.secure_channel(
                    self.address(service), self._credentials, options=options, interceptors=traced
                )
            else:
                found = grpc.aio.insecure_channel(self.address(service), options=options, interceptors=traced)
            self._channels[service] = found
        return found

    async def close(self) -> None:
        """Close every channel."""
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()


def peer_error(error: grpc.aio.AioRpcError, service: str) -> DomainError:
    """A failed peer call as the domain error our own caller should see."""
    return call_error(error.code(), error.details() or "", _details(error), service)


def call_error(code: grpc.StatusCode, message: str, details_bin: bytes | None, service: str) -> DomainError:
    """A callee's status (over gRPC or in-process, `core.local_calls`) as the domain error our caller sees."""
    if code == grpc.StatusCode.UNAVAILABLE and not details_bin:  # transport failure: no peer answered
        return Unavailable(f"the {service} service is unreachable; retry shortly", retry_after=1.0)
    if code == grpc.StatusCode.UNAUTHENTICATED and not details_bin:
        return Unauthenticated(f"the {service} service refused this process's credentials")
    return status.from_status(code, message, details_bin)


def _details(error: grpc.aio.AioRpcError) -> bytes | None:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            return value
    return None


class PeerClient:
    """Base of the gRPC adapters behind peer client ports: one outbound call with the right identity,
    the running call's request id, a deadline inside the caller's, and the callee's error mapped."""

    service = ""  # the callee's module name (auth, files, ai, chat)

    def __init__(self, peers: Peers, budget_seconds: float = DEFAULT_BUDGET_SECONDS) -> None:
        self._peers = peers
        self._budget = budget_seconds

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._peers.channel(self.service)

    async def _metadata(self, as_user: bool) -> list[tuple[str, str]]:
        items = [("x-request-id", principal.current_request_id())]
        if as_user:
            token = principal.current_principal().token
            if not token:
                raise Unauthenticated("this call acts for the end user, but the caller sent no user token")
        else:
            tokens = self._peers.service_tokens
            if tokens is None:
                raise Unavailable("service tokens are not configured in this process")
            token = await tokens.token(self._peers.channel(tokens.issuer))
        items.append(("authorization", f"Bearer {token}"))
        return items

    async def options(self, *, as_user: bool, budget_seconds: float | None = None) -> dict[str, Any]:
        """`timeout` and `metadata` for one outbound call. `as_user`: send the end user's own token (the
        callee acts as that user and applies its own access rules); otherwise this process's service token."""
        return {
            "timeout": deadlines.outbound_timeout(self._budget if budget_seconds is None else budget_seconds),
            "metadata": await self._metadata(as_user),
        }

    async def unary(self, call: Awaitable[T]) -> T:
        """Await one unary call, its failure mapped to our domain error."""
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            raise peer_error(error, self.service) from None
