"""Sign-in flows in flight, kept in the shared key-value store: any auth process can finish what another began.

A flow is stored under a hash of its state (256 random bits) for ten minutes. Taking it is single use: the
binding is compared first (a foreign code+state landed in another client's tab leaves the victim's flow alone),
then an atomic compare-and-delete decides which of two concurrent completions gets it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from pynode.core.errors import FailedPrecondition
from pynode.core.kv import KeyValueStore

FLOW_TTL_SECONDS = 600.0
_FLOW_INVALID = "this sign-in is unknown, expired, already used or was started elsewhere; start again"


def flow_invalid() -> FailedPrecondition:
    """The one answer for every flow that cannot be finished, so the cases cannot be told apart."""
    return FailedPrecondition(_FLOW_INVALID, reason="OIDC_FLOW_INVALID")


def new_secret() -> str:
    """256 random bits, base64url."""
    return secrets.token_urlsafe(32)


def _key(kind: str, handle: str) -> str:
    return f"oidc:{kind}:{hashlib.sha256(handle.encode()).hexdigest()}"


@dataclass(frozen=True)
class PendingFlow:
    """What StartOidcLogin remembers until the browser comes back (never shown to a client but the URL's part)."""

    provider: str
    purpose: str  # "login" or "link"
    user_id: str  # for "link": the account the identity goes to
    client_id: str
    redirect_uri: str
    verifier: str  # PKCE code_verifier
    nonce: str
    binding_sha256: str  # hex


@dataclass(frozen=True)
class PendingDevice:
    """A device-flow sign-in waiting for approval: the provider's device code stays here."""

    provider: str
    client_id: str
    device_code: str
    interval: float
    expires_at: float


class FlowStore:
    """Pending flows by state, and device flows by flow id, in the shared store."""

    def __init__(self, kv: KeyValueStore) -> None:
        self._kv = kv

    async def put(self, state: str, flow: PendingFlow) -> None:
        await self._kv.set(_key("flow", state), json.dumps(dataclasses.asdict(flow)), FLOW_TTL_SECONDS)

    async def take(self, state: str, binding: bytes) -> PendingFlow:
        """The flow for `state` if `binding` hashes to its binding, removed so nobody gets it twice."""
        key = _key("flow", state)
        raw = await self._kv.get(key)
        if raw is None:
            raise flow_invalid()
        flow = PendingFlow(**json.loads(raw))
        if not hmac.compare_digest(hashlib.sha256(binding).hexdigest(), flow.binding_sha256):
            raise flow_invalid()
        if not await self._kv.compare_and_set(key, raw, None):
            raise flow_invalid()  # a concurrent completion took it first
        return flow

    async def put_device(self, flow_id: str, device: PendingDevice, ttl: float) -> None:
        await self._kv.set(_key("device", flow_id), json.dumps(dataclasses.asdict(device)), ttl)

    async def take_device(self, flow_id: str) -> PendingDevice:
        """The device flow, removed: one AwaitOidcDeviceLogin polls for it."""
        key = _key("device", flow_id)
        raw = await self._kv.get(key)
        if raw is None or not await self._kv.compare_and_set(key, raw, None):
            raise flow_invalid()
        return PendingDevice(**json.loads(raw))
