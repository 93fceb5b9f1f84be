"""Auth business logic: registration, sign-in, refresh, sessions and account administration.

Never imports grpc: the servicer translates protos, the edge maps errors.
"""

from __future__ import annotations

import hmac
import ipaddress
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pynode.auth.audit import AuditTrail
from pynode.auth.domain import ROLES, AuditEvent, CurrentUser, IssuedTokens, LoginSession, User
from pynode.auth.passwords import check_policy
from pynode.auth.ports import (
    LoginLockouts,
    PasswordHashing,
    RateLimits,
    SessionRepository,
    TokenMinting,
    UserRepository,
)
from pynode.auth.throttle import account_key
from pynode.core.api_keys import capped_role
from pynode.core.contract import is_email
from pynode.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from pynode.core.paging import (
    decode_token,
    encode_token,
    invalid_page_token,
    keyset_page,
    offset_page,
    page_size,
    token_field,
)
from pynode.core.principal import ClientInfo, Principal, current_client
from pynode.core.settings import DEV_SERVICE_SECRET
from pynode.core.timestamps import utcnow

_BAD_CREDENTIALS = "e-mail or password is incorrect"
MAX_EMAIL_LENGTH = 254  # RFC 5321, and the users.email column


def normalise_email(email: str) -> str:
    """Trimmed and lower-cased: one account per mailbox however it is typed."""
    return email.strip().lower()


@dataclass(frozen=True)
class SessionView:
    """A session as shown to its owner."""

    session: LoginSession
    current: bool


class AuthService:
    """The auth use cases."""

    def __init__(
        self,
        users: UserRepository,
        hasher: PasswordHashing,
        sessions: SessionRepository,
        issuer: TokenMinting,
        limiter: RateLimits,
        lockout: LoginLockouts,
        audit: AuditTrail,
        service_secret: str,
    ) -> None:
        self.users = users
        self.hasher = hasher
        self.sessions = sessions
        self.issuer = issuer
        self.limiter = limiter
        self.lockout = lockout
        self.audit = audit
        self._service_secret = service_secret
        # The development default is public (it is in the source): dev mode accepts it from this machine only.
        self._well_known_secret = service_secret == DEV_SERVICE_SECRET
        # Told after an account's role or disabled flag changed (the API keys re-check their owner).
        self.account_changed: Callable[[str], Awaitable[None]] | None = None

    async def _account_changed(self, user_id: str) -> None:
        if self.account_changed is not None:
            await self.account_changed(user_id)

    async def _save(self, user: User) -> None:
        user.updated_at = utcnow()
        await self.users.save(user)

    async def _start_session(self, user: User, client: ClientInfo) -> IssuedTokens:
        session, refresh = await self.sessions.create(str(user.id), user.role, client.user_agent, client.address)
        return self._tokens(session, refresh)

    async def _sign_in(self, user: User, client: ClientInfo) -> tuple[User, IssuedTokens]:
        """Start a session for `user` as it was read before hashing, then read the account again.

        A role change, disabling or password change commits and then sweeps the account's sessions.
        The new session is indexed before the second read, so a change that commits after that read
        finds it in its sweep, and one that committed before is seen here: the session is ended and the
        login fails (disabled, new password) or is redone with the new role. Either way the outcome is
        as if the change came strictly before or after the login.
        """
        for _attempt in range(3):
            session, refresh = await self.sessions.create(str(user.id), user.role, client.user_agent, client.address)
            now = await self.users.by_id(user.id)
            if now is not None and (now.role, now.disabled, now.password_hash) == (
                user.role,
                user.disabled,
                user.password_hash,
            ):
                return now, self._tokens(session, refresh)
            await self.sessions.revoke(session.id)
            if now is None or now.disabled or now.password_hash != user.password_hash:
                await self.audit.record("login.failed", client, subject=str(user.id), reason="CHANGED_DURING_LOGIN")
                raise Unauthenticated(_BAD_CREDENTIALS, reason="BAD_CREDENTIALS")
            user = now  # only the role changed: sign in again with the new one
        raise Unavailable("the account is being changed; retry", retry_after=0.5)

    async def sign_in(self, user: User, client: ClientInfo) -> tuple[User, IssuedTokens]:
        """Start a session for an account another way of signing in (SSO) has vouched for; see `_sign_in`."""
        return await self._sign_in(user, client)

    def _tokens(self, session: LoginSession, refresh: str) -> IssuedTokens:
        access, expires = self.issuer.access_token(session.user_id, session.id, session.role)
        return IssuedTokens(access, expires, refresh, session.expires_at)

    async def register(
        self, email: str, password: str, display_name: str, client: ClientInfo
    ) -> tuple[User, IssuedTokens]:
        """Create a user account and sign it in."""
        email = normalise_email(email)
        await self.limiter.hit("register", "address", client.address)
        await self.limiter.hit("register", "account", account_key(email))  # slows probing one e-mail from many places
        if len(email) > MAX_EMAIL_LENGTH:  # lower-casing can lengthen some Unicode letters
            raise InvalidArgument(
                f"email must be at most {MAX_EMAIL_LENGTH} characters",
                [FieldViolation("email", f"must be at most {MAX_EMAIL_LENGTH} characters", "TOO_LONG")],
            )
        check_policy(password, "password", email=email)
        # Hash before looking the e-mail up, so taken and free e-mails cost the same time.
        password_hash = await self.hasher.hash(password)
        now = utcnow()
        user = User(uuid.uuid4(), email, password_hash, display_name.strip(), "user", False, now, now)
        await self.users.add(user)
        await self.audit.record("register", client, actor=str(user.id), subject=str(user.id))
        return user, await self._start_session(user, client)

    async def login(self, email: str, password: str, client: ClientInfo) -> tuple[User, IssuedTokens]:
        """Check credentials and start a session; unknown e-mail and wrong password look the same."""
        email = normalise_email(email)
        account = account_key(email)  # a hash: no e-mails in Redis keys or audit details
        await self.limiter.hit("login", "address", client.address)
        # The per-account limit slows guessing from new places. An address that signed in to this
        # account before is exempt, so other addresses' failures cannot lock the owner out (its own
        # failures still meet the per-address lockout).
        if not await self.lockout.known_good(email, client.address):
            await self.limiter.hit("login", "account", account)
        await self.lockout.check(email, client.address)
        user = await self.users.by_email(email)
        ok = await self.hasher.verify(password, user.password_hash if user else None)
        if user is None or not ok or user.disabled:
            locked = await self.lockout.failed(email, client.address)
            subject = str(user.id) if user else ""
            why = "UNKNOWN_ACCOUNT" if user is None else "WRONG_PASSWORD" if not ok else "ACCOUNT_DISABLED"
            await self.audit.record("login.failed", client, subject=subject, reason=why, account=account)
            if locked:
                await self.audit.record("login.lockout", client, subject=subject, account=account)
            raise Unauthenticated(_BAD_CREDENTIALS, reason="BAD_CREDENTIALS")
        await self.lockout.succeeded(email, client.address)
        user, tokens = await self._sign_in(user, client)
        await self.audit.record("login.succeeded", client, actor=str(user.id), subject=str(user.id))
        return user, tokens

    async def refresh(self, refresh_token: str, client: ClientInfo) -> IssuedTokens:
        """Rotate a refresh token into a new pair."""
        # Every attempt costs the caller's address; only a secret issued for the session costs its owner's
        # budget. Charging the owner first let anyone who saw a session id (every access token shows it) spend
        # that budget with made-up secrets and stop the owner refreshing.
        await self.limiter.hit("refresh", "address", client.address)
        holder = await self.sessions.issued(refresh_token)
        await self.limiter.hit("refresh", "account", holder.user_id)
        try:
            session, refresh = await self.sessions.rotate(refresh_token)
        except Unauthenticated as exc:
            if exc.reason == "REFRESH_TOKEN_REUSED":
                await self.audit.record("refresh.reuse_detected", client, subject=holder.user_id, session=holder.id)
            raise
        return self._tokens(session, refresh)

    async def logout(self, caller: Principal, all_sessions: bool) -> None:
        """End the caller's session, or all of them."""
        if all_sessions:
            await self.sessions.revoke_user(caller.subject)
        else:
            await self.sessions.revoke(caller.session_id)
        await self.audit.record(
            "logout",
            current_client(),
            actor=caller.subject,
            subject=caller.subject,
            all_sessions=str(all_sessions).lower(),
        )

    async def current_user(self, caller: Principal) -> CurrentUser:
        """The caller's account (the repository caches profiles: clients ask on every screen), and the role the
        caller acts with: an `ai` or `read_only` key caps an admin's at user, and a client deciding what to
        offer (admin pages, `whoami`) must see the cap, not the account's role."""
        profile = await self.users.profile(caller.subject)
        if profile is None or profile.disabled:
            raise Unauthenticated("the account no longer exists or is disabled", reason="ACCOUNT_UNAVAILABLE")
        if not caller.api_key_id:
            return CurrentUser(profile, profile.role)
        return CurrentUser(profile, capped_role(caller.scope, profile.role), caller.scope)

    async def change_password(self, caller: Principal, current: str, new: str) -> None:
        """Replace the password and end every other session."""
        # A stolen access token must not become a way to guess the password: wrong current passwords
        # meet the same lockout as failed logins to this account, from this address.
        client = current_client()
        await self.limiter.hit("change-password", "account", caller.subject)
        user = await self.users.by_id(uuid.UUID(caller.subject))
        if user is None or user.disabled:
            raise Unauthenticated("the account no longer exists or is disabled", reason="ACCOUNT_UNAVAILABLE")
        await self.lockout.check(user.email, client.address)
        if not await self.hasher.verify(current, user.password_hash):
            locked = await self.lockout.failed(user.email, client.address)
            await self.audit.record(
                "password.change_failed", client, actor=caller.subject, subject=caller.subject, reason="WRONG_PASSWORD"
            )
            if locked:
                await self.audit.record("login.lockout", client, subject=caller.subject)
            raise InvalidArgument(
                "the current password is incorrect",
                [FieldViolation("current_password", "is not your current password", "WRONG_PASSWORD")],
            )
        await self.lockout.succeeded(user.email, client.address)
        check_policy(new, "new_password", email=user.email)
        if hmac.compare_digest(current.encode(), new.encode()):
            raise InvalidArgument(
                "new_password must differ from the current one",
                [FieldViolation("new_password", "must differ from current_password", "UNCHANGED")],
            )
        user.password_hash = await self.hasher.hash(new)
        await self._save(user)
        ended = await self.sessions.revoke_user(caller.subject, keep=caller.session_id)
        await self.audit.record(
            "password.changed", client, actor=caller.subject, subject=caller.subject, sessions_ended=str(ended)
        )

    async def list_sessions(self, caller: Principal, size: int, token: str) -> tuple[list[SessionView], str]:
        """The caller's sessions, newest first."""
        chunk, next_token = offset_page(await self.sessions.list_for_user(caller.subject), size, token)
        return [SessionView(s, s.id == caller.session_id) for s in chunk], next_token

    async def revoke_session(self, caller: Principal, session_id: str) -> None:
        """End one of the caller's own sessions."""
        session = await self.sessions.get(session_id)
        if session is None or session.user_id != caller.subject:
            raise NotFound("no such session of yours", reason="SESSION_NOT_FOUND")
        await self.sessions.revoke(session_id)
        await self.audit.record(
            "session.revoked", current_client(), actor=caller.subject, subject=caller.subject, session=session_id
        )

    async def lookup_user(self, email: str, user_id: str) -> tuple[str, str]:
        """The id and display name of the enabled account with this e-mail or id (for services; NotFound when
        there is none)."""
        if bool(email) == bool(user_id):
            raise InvalidArgument(
                "give exactly one of email and user_id", [FieldViolation("email", "give email or user_id, not both")]
            )
        user = await (self.users.by_email(normalise_email(email)) if email else self.users.by_id(uuid.UUID(user_id)))
        if user is None or user.disabled:
            raise NotFound("no enabled account has this e-mail", reason="USER_NOT_FOUND")
        return str(user.id), user.display_name

    async def issue_service_token(self, service_name: str, secret: str, client: ClientInfo) -> tuple[str, float]:
        """A service token for a process that knows the shared secret (rate limited: no guessing)."""
        await self.limiter.hit("service-token", "address", client.address)
        if not hmac.compare_digest(secret.encode(), self._service_secret.encode()):
            await self.audit.record("service_token.refused", client, service=service_name[:64])
            raise Unauthenticated("service secret is incorrect", reason="BAD_SERVICE_SECRET")
        if self._well_known_secret and not _is_loopback(client.address):
            await self.audit.record("service_token.refused", client, service=service_name[:64])
            raise PermissionDenied(
                "the development service secret is accepted from this machine only; give every service the same "
                "DEVPYNODE_SERVICE_SECRET of your own (openssl rand -hex 32)",
                reason="DEV_SECRET_NOT_LOCAL",
            )
        await self.audit.record("service_token.issued", client, actor=f"service:{service_name[:64]}")
        return self.issuer.service_token(service_name)

    async def list_users(self, size: int, token: str) -> tuple[list[User], str]:
        """All accounts, oldest first (admin)."""
        return await keyset_page(size, token, self.users.page, lambda user: (user.created_at, user.id))

    async def update_user(self, caller: Principal, user_id: str, role: str | None, disabled: bool | None) -> User:
        """Change an account's role or disabled flag; disabling ends its sessions (admin)."""
        user = await self.users.by_id(uuid.UUID(user_id))
        if user is None:
            raise NotFound(f"no user {user_id}", reason="USER_NOT_FOUND")
        if role is not None and role not in ROLES:
            raise InvalidArgument(
                "role must be user or admin", [FieldViolation("role", "must be ROLE_USER or ROLE_ADMIN")]
            )
        if str(user.id) == caller.subject and (disabled or role == "user"):
            raise FailedPrecondition("admins cannot disable or demote themselves", reason="SELF_LOCKOUT")
        before = (user.role, user.disabled)
        if role is not None:
            user.role = role
        if disabled is not None:
            user.disabled = disabled
        user.updated_at = utcnow()
        if not await self.users.save_keeping_an_admin(user):
            raise FailedPrecondition(
                "this is the last enabled administrator: promote another account first", reason="LAST_ADMIN"
            )
        if user.disabled:
            await self.sessions.revoke_user(str(user.id))
        elif role is not None:
            await self.sessions.set_role(str(user.id), role)
        if (user.role, user.disabled) != before:
            await self._account_changed(str(user.id))
        await self._audit_change(caller, user, before)
        return user

    async def _audit_change(self, caller: Principal, user: User, before: tuple[str, bool]) -> None:
        client, who, whom = current_client(), caller.subject, str(user.id)
        if user.role != before[0]:
            await self.audit.record(
                "user.role_changed", client, actor=who, subject=whom, from_role=before[0], to_role=user.role
            )
        if user.disabled != before[1]:
            await self.audit.record(
                "user.disabled" if user.disabled else "user.enabled", client, actor=who, subject=whom
            )

    async def list_audit_events(self, size: int, token: str, user_id: str, kind: str) -> tuple[list[AuditEvent], str]:
        """Security events, newest first, optionally of one account or kind (admin)."""
        limit = page_size(size)
        filters = f"{user_id}|{kind}"
        position = decode_token(token)
        before = None
        if position:
            before = token_field(position, "b", int)
            if token_field(position, "f", str) != filters:
                raise invalid_page_token()
        if user_id:
            user_id = str(uuid.UUID(user_id))  # the contract checked the shape; this is the stored spelling
        events = await self.audit.store.page(before, limit + 1, user_id, kind)
        next_token = ""
        if len(events) > limit:
            events = events[:limit]
            next_token = encode_token({"b": events[-1].id, "f": filters})
        return events, next_token

    async def create_admin(self, email: str, password: str | None, display_name: str) -> User:
        """Make an administrator from the command line, or promote an existing account (its password is
        left alone: `password` is only for a new account)."""
        email = normalise_email(email)
        if not is_email(email) or len(email) > MAX_EMAIL_LENGTH:
            raise InvalidArgument(
                "email must be an e-mail address like name@example.com",
                [FieldViolation("email", "must be an e-mail address like name@example.com", "BAD_FORMAT")],
            )
        existing = await self.users.by_email(email)
        if existing is not None:
            before = existing.role, existing.disabled
            existing.role, existing.disabled = "admin", False
            await self._save(existing)
            await self.sessions.set_role(str(existing.id), "admin")
            await self._account_changed(str(existing.id))
            await self.audit.record(
                "admin.created",
                current_client(),
                actor="cli",
                subject=str(existing.id),
                promoted="true",
                from_role=before[0],
                was_disabled=str(before[1]).lower(),
            )
            return existing
        if not password:
            raise InvalidArgument(
                "a password is required for a new account", [FieldViolation("password", "is required", "REQUIRED")]
            )
        check_policy(password, "password", email=email)
        now = utcnow()
        user = User(uuid.uuid4(), email, await self.hasher.hash(password), display_name, "admin", False, now, now)
        await self.users.add(user)
        await self.audit.record("admin.created", current_client(), actor="cli", subject=str(user.id), promoted="false")
        return user


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
