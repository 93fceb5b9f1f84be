"""Single sign-on use cases: start and finish a provider sign-in, the device flow, linking and unlinking.

Accounts are found by (issuer, subject), never by e-mail. An e-mail that belongs to a local account is refused
(OIDC_LINK_REQUIRED) unless the provider opts in to auto-linking, which then needs `email_verified` to be the
boolean true and a non-admin account. Roles follow the provider's groups at each sign-in when a mapping is
configured, within the last-admin rule. Never imports grpc.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pynode.auth.domain import IssuedTokens, LinkedIdentity, User
from pynode.auth.oidc.config import OidcProviderConfig
from pynode.auth.oidc.flows import (
    FLOW_TTL_SECONDS,
    FlowStore,
    PendingDevice,
    PendingFlow,
    flow_invalid,
    new_secret,
)
from pynode.auth.oidc.provider import DevicePending, OidcProvider, ProviderRefused
from pynode.auth.passwords import check_policy
from pynode.auth.ports import IdentityRepository
from pynode.auth.service import MAX_EMAIL_LENGTH, AuthService, normalise_email
from pynode.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from pynode.core.principal import ClientInfo, Principal, current_client
from pynode.core.timestamps import utcnow

PENDING_EVERY_SECONDS = 5.0  # how often AwaitOidcDeviceLogin tells the client it is still waiting
_LOOPBACK_PATH = "/callback"


@dataclass(frozen=True)
class StartedFlow:
    """What the client opens."""

    authorization_url: str
    state: str
    expires_at: float


@dataclass(frozen=True)
class SsoLogin:
    """A finished SSO sign-in."""

    user: User
    tokens: IssuedTokens
    created: bool


@dataclass(frozen=True)
class StartedDevice:
    """What the person should do to approve a device sign-in."""

    flow_id: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_at: float


@dataclass(frozen=True)
class ProviderIdentity:
    """Who the provider says signed in, after every check."""

    issuer: str
    subject: str
    email: str  # normalised; "" when the provider gave none
    email_verified: bool  # only a real boolean true counts
    name: str
    groups: tuple[str, ...] | None  # None: no groups claim configured


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class OidcService:
    """The SSO use cases, on top of the password service's accounts and sessions."""

    def __init__(
        self,
        auth: AuthService,
        providers: dict[str, OidcProvider],
        identities: IdentityRepository,
        flows: FlowStore,
        web_redirect_uri: str,
    ) -> None:
        self._auth = auth
        self.providers = providers
        self.identities = identities
        self._flows = flows
        self._web_redirect_uri = web_redirect_uri
        self.closers: list[Callable[[], Awaitable[None]]] = []

    async def close(self) -> None:
        """Release the HTTP client."""
        for close in self.closers:
            await close()

    # --- listing and starting -------------------------------------------------------------------------------

    def list_providers(self) -> list[tuple[OidcProviderConfig, bool]]:
        """Each provider and whether it offers the device flow (as far as its last discovery said: listing is
        anonymous and never calls a provider)."""
        listed = []
        for provider in self.providers.values():
            known = provider.known
            device = bool(provider.config.cli_client_id) and bool(known and known.device_authorization_endpoint)
            listed.append((provider.config, device))
        return listed

    def _provider(self, provider_id: str) -> OidcProvider:
        provider = self.providers.get(provider_id)
        if provider is None:
            raise NotFound(f"no sign-in provider {provider_id!r} is configured here", reason="OIDC_PROVIDER_UNKNOWN")
        return provider

    async def start(
        self, provider_id: str, kind: str, loopback_port: int, binding_sha256: bytes, *, link_for: str = ""
    ) -> StartedFlow:
        """A new flow: state, nonce and PKCE verifier made and kept here; the URL to open."""
        client = current_client()
        await self._auth.limiter.hit("oidc-start", "address", client.address)
        provider = self._provider(provider_id)
        if len(binding_sha256) != 32:
            raise InvalidArgument(
                "binding_sha256 must be the 32-byte SHA-256 of a secret the client keeps",
                [FieldViolation("binding_sha256", "must be 32 bytes", "BAD_LENGTH")],
            )
        if kind == "web":
            client_id, redirect_uri = provider.config.client_id, self._web_redirect_uri
        elif kind == "loopback":
            if not provider.config.cli_client_id:
                raise FailedPrecondition(
                    f"provider {provider_id} has no native client for the CLI; use the web app",
                    reason="OIDC_LOOPBACK_UNAVAILABLE",
                )
            if not 1024 <= loopback_port <= 65535:
                raise InvalidArgument(
                    "loopback_port must be the port (1024-65535) the CLI listens on at 127.0.0.1",
                    [FieldViolation("loopback_port", "must be 1024-65535", "OUT_OF_RANGE")],
                )
            # Built here, never taken from the client: only this machine's loopback can receive the code.
            client_id, redirect_uri = provider.config.cli_client_id, f"http://127.0.0.1:{loopback_port}{_LOOPBACK_PATH}"
        else:
            raise InvalidArgument("client must be WEB or CLI_LOOPBACK", [FieldViolation("client", "is required")])
        meta = await provider.metadata()
        state, nonce, verifier = new_secret(), new_secret(), new_secret() + new_secret()
        await self._flows.put(
            state,
            PendingFlow(
                provider_id,
                "link" if link_for else "login",
                link_for,
                client_id,
                redirect_uri,
                verifier,
                nonce,
                binding_sha256.hex(),
            ),
        )
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(provider.config.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": _challenge(verifier),
            "code_challenge_method": "S256",
        }
        if link_for:  # a provider session left in a shared browser must not be linked without its owner
            query["prompt"] = "login"
        separator = "&" if "?" in meta.authorization_endpoint else "?"
        url = meta.authorization_endpoint + separator + urllib.parse.urlencode(query)
        await self._auth.audit.record(
            "oidc.started", client, actor=link_for, subject=link_for, provider=provider_id, purpose=kind
        )
        return StartedFlow(url, state, time.time() + FLOW_TTL_SECONDS)

    # --- finishing -------------------------------------------------------------------------------------------

    async def complete(self, callback_query: str, binding: bytes) -> SsoLogin:
        """Finish a sign-in flow: the account signed in, created or refused."""
        client = current_client()
        await self._auth.limiter.hit("oidc-complete", "address", client.address)
        flow, provider = await self._take(callback_query, binding, client, purpose="login")
        identity = await self._identify(provider, flow, callback_query, client)
        return await self._sign_in(provider, identity, client)

    async def link(self, caller: Principal, callback_query: str, binding: bytes) -> LinkedIdentity:
        """Finish a link flow begun by the same caller: the identity joins the caller's account."""
        client = current_client()
        await self._auth.limiter.hit("oidc-complete", "address", client.address)
        flow, provider = await self._take(callback_query, binding, client, purpose="link", user_id=caller.subject)
        identity = await self._identify(provider, flow, callback_query, client)
        existing = await self.identities.get(identity.issuer, identity.subject)
        if existing is not None:
            if str(existing.user_id) == caller.subject:
                return existing
            await self._refuse(client, "identity.link_refused", provider, "IDENTITY_IN_USE", caller.subject)
            raise FailedPrecondition(
                "this provider identity is linked to another account; unlink it there first",
                reason="OIDC_IDENTITY_IN_USE",
            )
        now = utcnow()
        linked = LinkedIdentity(
            identity.issuer,
            identity.subject,
            uuid.UUID(caller.subject),
            provider.config.id,
            identity.email,
            now,
            now,
        )
        await self.identities.add(linked)
        await self._auth.audit.record(
            "identity.linked", client, actor=caller.subject, subject=caller.subject, provider=provider.config.id
        )
        return linked

    async def _take(
        self, callback_query: str, binding: bytes, client: ClientInfo, *, purpose: str, user_id: str = ""
    ) -> tuple[PendingFlow, OidcProvider]:
        try:
            params = _query(callback_query)
            if not params.get("state"):
                raise flow_invalid()
            flow = await self._flows.take(params["state"], binding)
        except FailedPrecondition:
            # Unknown, spent, expired or foreign: audited as one reason, like the answer (rate-limited above).
            await self._refuse(client, "oidc.refused", None, "FLOW_INVALID", user_id)
            raise
        provider = self.providers.get(flow.provider)
        if flow.purpose != purpose or flow.user_id != user_id or provider is None:
            await self._refuse(client, "oidc.refused", None, "FLOW_MISMATCH", user_id)
            raise flow_invalid()
        meta = await provider.metadata()
        iss = params.get("iss")
        # RFC 9207: with the parameter announced, a missing or different iss is a mix-up; without it, an iss that
        # is there must still be exact.
        if (meta.iss_parameter and iss is None) or (iss is not None and iss != meta.issuer):
            await self._refuse(client, "oidc.refused", provider, "ISS_MISMATCH", user_id)
            raise Unauthenticated(
                "the sign-in answer names another provider (iss); start again", reason="OIDC_ISSUER_MISMATCH"
            )
        if "error" in params:
            error = "".join(c for c in params["error"][:64] if c.isalnum() or c == "_")
            await self._refuse(client, "oidc.refused", provider, "PROVIDER_ERROR", user_id, error=error)
            raise Unauthenticated(
                f"the provider did not sign you in ({error}); start again",
                reason="OIDC_PROVIDER_ERROR",
                metadata={"error": error},
            )
        return flow, provider

    async def _identify(
        self, provider: OidcProvider, flow: PendingFlow, callback_query: str, client: ClientInfo
    ) -> ProviderIdentity:
        code = _query(callback_query).get("code", "")
        if not code:
            raise flow_invalid()
        try:
            answer = await provider.exchange_code(code, flow.redirect_uri, flow.verifier, flow.client_id)
            return await self._claims(provider, answer, flow.client_id, flow.nonce)
        except ProviderRefused as refused:
            await self._refuse(client, "oidc.refused", provider, refused.reason or "TOKEN_INVALID", flow.user_id)
            raise

    async def _claims(
        self, provider: OidcProvider, answer: dict[str, Any], client_id: str, nonce: str | None
    ) -> ProviderIdentity:
        claims = await provider.check_id_token(answer["id_token"], client_id, nonce)
        info = await provider.userinfo(str(answer.get("access_token", "")), claims["sub"])
        merged = {**claims, **{k: v for k, v in info.items() if k not in ("iss", "aud", "sub")}}
        email = merged.get("email")
        email = normalise_email(email) if isinstance(email, str) and len(email) <= MAX_EMAIL_LENGTH else ""
        groups: tuple[str, ...] | None = None
        if provider.config.groups_claim:
            raw = merged.get(provider.config.groups_claim)
            # A list of strings only: a string would otherwise be taken letter by letter or as one group.
            groups = tuple(g for g in raw if isinstance(g, str)) if isinstance(raw, list) else ()
        name = merged.get("name")
        return ProviderIdentity(
            claims["iss"],
            claims["sub"],
            email,
            merged.get("email_verified") is True,
            name[:100] if isinstance(name, str) else "",
            groups,
        )

    # --- accounts --------------------------------------------------------------------------------------------

    async def _sign_in(self, provider: OidcProvider, who: ProviderIdentity, client: ClientInfo) -> SsoLogin:
        config = provider.config
        created = False
        linked = await self.identities.get(who.issuer, who.subject)
        if linked is not None:
            user = await self._auth.users.by_id(linked.user_id)
        else:
            user, created = await self._resolve_new(provider, who, client)
        if user is None or user.disabled:
            subject = str(user.id) if user else ""
            await self._refuse(client, "login.failed", provider, "ACCOUNT_DISABLED", subject)
            raise Unauthenticated("the account no longer exists or is disabled", reason="ACCOUNT_UNAVAILABLE")
        user = await self._apply_groups(config, who, user, client)
        user, tokens = await self._auth.sign_in(user, client)
        await self.identities.touch(who.issuer, who.subject, who.email, utcnow())
        await self._auth.audit.record(
            "login.succeeded", client, actor=str(user.id), subject=str(user.id), method="oidc", provider=config.id
        )
        return SsoLogin(user, tokens, created)

    async def _resolve_new(
        self, provider: OidcProvider, who: ProviderIdentity, client: ClientInfo
    ) -> tuple[User | None, bool]:
        """An identity seen for the first time: link it by verified e-mail when allowed, else create an account."""
        config = provider.config
        if config.allowed_email_domains:
            domain = who.email.rpartition("@")[2]
            if not who.email_verified or domain not in config.allowed_email_domains:
                await self._refuse(client, "login.failed", provider, "EMAIL_DOMAIN_NOT_ALLOWED")
                raise PermissionDenied(
                    f"{config.label} accounts of this e-mail domain may not sign in here",
                    reason="OIDC_EMAIL_DOMAIN_NOT_ALLOWED",
                )
        if not who.email or not who.email_verified:
            # Checked before any account is looked up: an e-mail nobody proved to own neither creates an account
            # (which would claim the mailbox) nor links one, nor learns whether one exists.
            await self._refuse(client, "login.failed", provider, "EMAIL_UNVERIFIED")
            raise FailedPrecondition(
                f"{config.label} did not confirm a verified e-mail address; verify it there, or ask an administrator",
                reason="OIDC_EMAIL_UNVERIFIED",
            )
        local = await self._auth.users.by_email(who.email)
        if local is not None:
            if config.auto_link_verified_email and local.role != "admin":
                await self._link(provider, who, local.id)
                await self._auth.audit.record(
                    "identity.linked",
                    client,
                    actor=str(local.id),
                    subject=str(local.id),
                    provider=config.id,
                    auto="true",
                )
                return local, False
            await self._refuse(client, "login.failed", provider, "LINK_REQUIRED", str(local.id))
            raise FailedPrecondition(
                f"an account with this e-mail exists: sign in with its password, then link {config.label} "
                "from the account page",
                reason="OIDC_LINK_REQUIRED",
            )
        if not config.allow_signup:
            await self._refuse(client, "login.failed", provider, "SIGNUP_CLOSED")
            raise PermissionDenied(
                f"no account here is linked to this {config.label} identity, and sign-up through it is off",
                reason="OIDC_SIGNUP_CLOSED",
            )
        now = utcnow()
        role = _role_for(config, who.groups) or "user"
        user = User(uuid.uuid4(), who.email, "", who.name or who.email.partition("@")[0], role, False, now, now)
        try:
            await self._auth.users.add(user)
        except AlreadyExists:  # the same e-mail registered a moment ago: sign in with it next time, or link
            raise FailedPrecondition(
                "an account with this e-mail exists: sign in with its password, then link it",
                reason="OIDC_LINK_REQUIRED",
            ) from None
        await self._link(provider, who, user.id)
        await self._auth.audit.record(
            "register", client, actor=str(user.id), subject=str(user.id), method="oidc", provider=config.id, role=role
        )
        return user, True

    async def _link(self, provider: OidcProvider, who: ProviderIdentity, user_id: uuid.UUID) -> None:
        now = utcnow()
        await self.identities.add(
            LinkedIdentity(who.issuer, who.subject, user_id, provider.config.id, who.email, now, now)
        )

    async def _apply_groups(
        self, config: OidcProviderConfig, who: ProviderIdentity, user: User, client: ClientInfo
    ) -> User:
        """The role the provider's groups give, at every sign-in; the last enabled admin is never demoted."""
        role = _role_for(config, who.groups)
        if role is None or role == user.role:
            return user
        before = user.role
        user.role, user.updated_at = role, utcnow()
        if not await self._auth.users.save_keeping_an_admin(user):
            user.role = before
            await self._auth.audit.record(
                "user.role_kept", client, actor=f"oidc:{config.id}", subject=str(user.id), reason="LAST_ADMIN"
            )
            return user
        await self._auth.sessions.set_role(str(user.id), role)
        await self._auth.audit.record(
            "user.role_changed",
            client,
            actor=f"oidc:{config.id}",
            subject=str(user.id),
            from_role=before,
            to_role=role,
        )
        return user

    async def _refuse(
        self,
        client: ClientInfo,
        kind: str,
        provider: OidcProvider | None,
        reason: str,
        subject: str = "",
        **details: str,
    ) -> None:
        await self._auth.audit.record(
            kind,
            client,
            subject=subject,
            method="oidc",
            provider=provider.config.id if provider else "",
            reason=reason,
            **details,
        )

    # --- device flow -----------------------------------------------------------------------------------------

    async def start_device(self, provider_id: str) -> StartedDevice:
        """A device authorization at the provider; the device code stays here, the client gets a flow id."""
        client = current_client()
        await self._auth.limiter.hit("oidc-start", "address", client.address)
        provider = self._provider(provider_id)
        if not provider.config.cli_client_id:
            raise FailedPrecondition(
                f"provider {provider_id} has no native client for the device flow", reason="OIDC_DEVICE_UNAVAILABLE"
            )
        grant = await provider.device_authorize(provider.config.cli_client_id)
        flow_id = new_secret()
        expires_at = time.time() + min(grant.expires_in, 1800.0)
        await self._flows.put_device(
            flow_id,
            PendingDevice(provider_id, provider.config.cli_client_id, grant.device_code, grant.interval, expires_at),
            min(grant.expires_in, 1800.0),
        )
        await self._auth.audit.record("oidc.started", client, provider=provider_id, purpose="device")
        return StartedDevice(
            flow_id, grant.user_code, grant.verification_uri, grant.verification_uri_complete, expires_at
        )

    async def await_device(self, flow_id: str) -> AsyncIterator[SsoLogin | None]:
        """None now and then while the person has not approved; then the sign-in. One caller per flow."""
        client = current_client()
        await self._auth.limiter.hit("oidc-complete", "address", client.address)
        device = await self._flows.take_device(flow_id)
        provider = self._provider(device.provider)
        interval = max(device.interval, 1.0)
        last_pending = 0.0
        while True:
            if time.time() > device.expires_at:
                raise FailedPrecondition("the device code expired; start again", reason="OIDC_FLOW_INVALID")
            try:
                answer = await provider.poll_device(device.device_code, device.client_id)
            except DevicePending as pending:
                if pending.slow_down:
                    interval += 5.0  # RFC 8628 section 3.5
                if time.monotonic() - last_pending >= PENDING_EVERY_SECONDS:
                    last_pending = time.monotonic()
                    yield None
                await asyncio.sleep(interval)
                continue
            except ProviderRefused as refused:
                await self._refuse(client, "oidc.refused", provider, refused.reason or "DEVICE_REFUSED")
                raise
            # No authorization request carried a nonce in the device flow: the ID token has none to compare.
            identity = await self._claims(provider, answer, device.client_id, None)
            yield await self._sign_in(provider, identity, client)
            return

    # --- the account page ------------------------------------------------------------------------------------

    async def linked(self, user_id: str) -> tuple[list[LinkedIdentity], bool]:
        """An account's identities, and whether it has a password."""
        user = await self._auth.users.by_id(uuid.UUID(user_id))
        if user is None:
            raise NotFound(f"no user {user_id}", reason="USER_NOT_FOUND")
        return await self.identities.for_user(user.id), bool(user.password_hash)

    async def unlink(self, caller: Principal, issuer: str, subject: str) -> None:
        """Detach one of the caller's identities, unless it is the last way in."""
        removed = await self.identities.remove_keeping_one_way_in(uuid.UUID(caller.subject), issuer, subject)
        client = current_client()
        if removed is None:
            raise NotFound("no such identity is linked to your account", reason="OIDC_IDENTITY_NOT_FOUND")
        if not removed:
            await self._refuse(client, "identity.unlink_refused", None, "LAST_SIGN_IN_METHOD", caller.subject)
            raise FailedPrecondition(
                "this is the account's last way to sign in: set a password or link another identity first",
                reason="LAST_SIGN_IN_METHOD",
            )
        await self._auth.audit.record(
            "identity.unlinked", client, actor=caller.subject, subject=caller.subject, issuer=issuer[:200]
        )

    async def set_password(self, caller: Principal, new: str) -> None:
        """A first password for an account that signs in only by SSO."""
        user = await self._auth.users.by_id(uuid.UUID(caller.subject))
        if user is None or user.disabled:
            raise Unauthenticated("the account no longer exists or is disabled", reason="ACCOUNT_UNAVAILABLE")
        if user.password_hash:
            raise FailedPrecondition("the account has a password: use ChangePassword", reason="PASSWORD_ALREADY_SET")
        check_policy(new, "new_password", email=user.email)
        user.password_hash = await self._auth.hasher.hash(new)
        user.updated_at = utcnow()
        await self._auth.users.save(user)
        await self._auth.audit.record("password.set", current_client(), actor=caller.subject, subject=caller.subject)


def _role_for(config: OidcProviderConfig, groups: tuple[str, ...] | None) -> str | None:
    """The role the groups map to (admin wins), or None when this provider maps no groups."""
    if groups is None or not config.group_roles:
        return None
    roles = {config.group_roles[g] for g in groups if g in config.group_roles}
    return "admin" if "admin" in roles else "user"


def _query(callback_query: str) -> dict[str, str]:
    """The redirect's parameters; a repeated parameter makes the answer unusable (parameter pollution)."""
    pairs = urllib.parse.parse_qsl(callback_query.lstrip("?"), keep_blank_values=True)
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise flow_invalid()
        params[name] = value
    return params
