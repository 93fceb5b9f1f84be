"""Who is calling: set by the gRPC edge for the duration of one RPC."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pynode.core.errors import Unauthenticated


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user session or a service."""

    subject: str  # user id, or "service:<name>"
    role: str  # "user", "admin" or "service"
    session_id: str = ""
    # The bearer token itself, for peer calls that act as this user; never shown in a repr or log.
    token: str = field(default="", repr=False, compare=False)
    # Set when the caller authenticated with a personal API key: its id (the usage ledger records it) and
    # scope (the edge caps what it may call: pynode.core.api_keys).
    api_key_id: str = ""
    scope: str = ""


class ClientInfo:
    """What the edge knows about the caller's connection, authenticated or not.

    The address is parsed on first use: most calls never need it.
    """

    __slots__ = ("_address", "_forwarded", "_peer", "user_agent")

    def __init__(self, peer: str, user_agent: str, forwarded: str | None = None) -> None:
        self._peer = peer
        self._forwarded = forwarded
        self._address: str | None = None
        self.user_agent = user_agent

    @property
    def address(self) -> str:
        """The caller's IP: the last x-forwarded-for hop when trusted, else the peer's."""
        if self._address is None:
            self._address = _parse_address(self._peer, self._forwarded)
        return self._address


def _parse_address(peer: str, forwarded: str | None) -> str:
    if forwarded:
        # The last hop is the one the trusted proxy appended (Envoy with use_remote_address adds the address it
        # saw): anything before it came from the client, which may write whatever it likes there.
        return forwarded.rsplit(",", 1)[-1].strip()[:64]
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer[:64]


class Authenticator(Protocol):
    """Turns a bearer token into a Principal, or raises Unauthenticated."""

    async def authenticate(self, token: str) -> Principal: ...


@runtime_checkable
class LivenessCheck(Protocol):
    """An Authenticator that can tell whether a caller it admitted still may be served (its session or key not
    revoked, its account not disabled): long streams ask it while they run, since a call is otherwise only
    checked when it starts. Not expiry: a stream outlives its access token, as it always did."""

    async def still_valid(self, who: Principal) -> None:
        """Raise Unauthenticated when `who`'s session or key has ended."""


_principal: ContextVar[Principal | None] = ContextVar("devpynode_principal", default=None)
_client: ContextVar[ClientInfo | None] = ContextVar("devpynode_client", default=None)
_request_id: ContextVar[str] = ContextVar("devpynode_request_id", default="")
NO_CLIENT = ClientInfo("", "")


def current_principal() -> Principal:
    """The caller of the running RPC; raises if the RPC is anonymous."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("this call needs an access token: send `authorization: Bearer <access_token>`")
    return principal


def current_client() -> ClientInfo:
    """Address and user agent of the running RPC's caller."""
    return _client.get() or NO_CLIENT


def current_request_id() -> str:
    """The running RPC's request id (passed on to peers, so one request is one id across the mesh)."""
    return _request_id.get()


def bind(principal: Principal | None, client: ClientInfo | None = None, request_id: str | None = None) -> None:
    """Set the caller (and its connection and request id, when given) for the running task; each RPC runs
    in its own task."""
    _principal.set(principal)
    if client is not None:
        _client.set(client)
    if request_id is not None:
        _request_id.set(request_id)
