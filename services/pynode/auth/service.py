"""Auth business logic: registration, sign-in, refresh, sessions and account administration.

Never imports grpc: the servicer translates protos, the edge maps errors.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime

from pynode.auth.domain import ROLES, IssuedTokens, LoginSession, Profile, User
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
from pynode.core.contract import is_email
from pynode.core.db import utcnow
from pynode.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from pynode.core.paging import decode_token, encode_token, invalid_page_token, page_size
from pynode.core.principal import ClientInfo, Principal

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
        service_secret: str,
    ) -> None:
        self.users = users
        self.hasher = hasher
        self.sessions = sessions
        self.issuer = issuer
        self.limiter = limiter
        self.lockout = lockout
        self._service_secret = service_secret

    async def _save(self, user: User) -> None:
        user.updated_at = utcnow()
        await self.users.save(user)

    async def _start_session(self, user: User, client: ClientInfo) -> IssuedTokens:
        session, refresh = await self.sessions.create(str(user.id), user.role, client.user_agent, client.address)
        return self._tokens(session, refresh)

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
        return user, await self._start_session(user, client)

    async def login(self, email: str, password: str, client: ClientInfo) -> tuple[User, IssuedTokens]:
        """Check credentials and start a session; unknown e-mail and wrong password look the same."""
        email = normalise_email(email)
        await self.limiter.hit("login", "address", client.address)
        await self.limiter.hit("login", "account", account_key(email))  # a hash: no e-mails in Redis keys
        await self.lockout.check(email, client.address)
        user = await self.users.by_email(email)
        ok = await self.hasher.verify(password, user.password_hash if user else None)
        if user is None or not ok or user.disabled:
            await self.lockout.failed(email, client.address)
            raise Unauthenticated(_BAD_CREDENTIALS, reason="BAD_CREDENTIALS")
        await self.lockout.succeeded(email, client.address)
        return user, await self._start_session(user, client)

    async def refresh(self, refresh_token: str, client: ClientInfo) -> IssuedTokens:
        """Rotate a refresh token into a new pair."""
        await self.limiter.hit("refresh", "address", client.address)
        holder = await self.sessions.get(refresh_token.partition(".")[0][:64])
        if holder is not None:  # an unknown session fails in rotate, limited by address alone
            await self.limiter.hit("refresh", "account", holder.user_id)
        session, refresh = await self.sessions.rotate(refresh_token)
        return self._tokens(session, refresh)

    async def logout(self, caller: Principal, all_sessions: bool) -> None:
        """End the caller's session, or all of them."""
        if all_sessions:
            await self.sessions.revoke_user(caller.subject)
        else:
            await self.sessions.revoke(caller.session_id)

    async def current_user(self, caller: Principal) -> Profile:
        """The caller's account (the repository caches profiles: clients ask on every screen)."""
        profile = await self.users.profile(caller.subject)
        if profile is None or profile.disabled:
            raise Unauthenticated("the account no longer exists or is disabled", reason="ACCOUNT_UNAVAILABLE")
        return profile

    async def change_password(self, caller: Principal, current: str, new: str) -> None:
        """Replace the password and end every other session."""
        # Limited like Login: a stolen access token must not become a way to guess the password.
        await self.limiter.hit("change-password", "account", caller.subject)
        user = await self.users.by_id(uuid.UUID(caller.subject))
        if user is None or user.disabled:
            raise Unauthenticated("the account no longer exists or is disabled", reason="ACCOUNT_UNAVAILABLE")
        if not await self.hasher.verify(current, user.password_hash):
            raise InvalidArgument(
                "current_password is incorrect",
                [FieldViolation("current_password", "does not match", "WRONG_PASSWORD")],
            )
        check_policy(new, "new_password", email=user.email)
        if hmac.compare_digest(current.encode(), new.encode()):
            raise InvalidArgument(
                "new_password must differ from the current one",
                [FieldViolation("new_password", "must differ from current_password", "UNCHANGED")],
            )
        user.password_hash = await self.hasher.hash(new)
        await self._save(user)
        await self.sessions.revoke_user(caller.subject, keep=caller.session_id)

    async def list_sessions(self, caller: Principal, size: int, token: str) -> tuple[list[SessionView], str]:
        """The caller's sessions, newest first."""
        limit = page_size(size)
        position = decode_token(token)
        offset = position.get("o", 0) if position else 0
        if not isinstance(offset, int) or offset < 0:
            raise invalid_page_token()
        sessions = await self.sessions.list_for_user(caller.subject)
        chunk = sessions[offset : offset + limit]
        more = offset + limit < len(sessions)
        views = [SessionView(s, s.id == caller.session_id) for s in chunk]
        return views, encode_token({"o": offset + limit}) if more else ""

    async def revoke_session(self, caller: Principal, session_id: str) -> None:
        """End one of the caller's own sessions."""
        session = await self.sessions.get(session_id)
        if session is None or session.user_id != caller.subject:
            raise NotFound("no such session of yours", reason="SESSION_NOT_FOUND")
        await self.sessions.revoke(session_id)

    async def issue_service_token(self, service_name: str, secret: str, client: ClientInfo) -> tuple[str, float]:
        """A service token for a process that knows the shared secret (rate limited: no guessing)."""
        await self.limiter.hit("service-token", "address", client.address)
        if not hmac.compare_digest(secret.encode(), self._service_secret.encode()):
            raise Unauthenticated("service secret is incorrect", reason="BAD_SERVICE_SECRET")
        return self.issuer.service_token(service_name)

    async def list_users(self, size: int, token: str) -> tuple[list[User], str]:
        """All accounts, oldest first (admin)."""
        limit = page_size(size)
        position = decode_token(token)
        after = None
        if position:
            try:
                after = (datetime.fromisoformat(position["t"]), uuid.UUID(position["i"]))
            except (KeyError, ValueError, TypeError):
                raise invalid_page_token() from None
        users = await self.users.page(after, limit + 1)
        next_token = ""
        if len(users) > limit:
            users = users[:limit]
            last = users[-1]
            next_token = encode_token({"t": last.created_at.isoformat(), "i": str(last.id)})
        return users, next_token

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
        if role is not None:
            user.role = role
        if disabled is not None:
            user.disabled = disabled
        await self._save(user)
        if user.disabled:
            await self.sessions.revoke_user(str(user.id))
        elif role is not None:
            await self.sessions.set_role(str(user.id), role)
        return user

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
            existing.role, existing.disabled = "admin", False
            await self._save(existing)
            await self.sessions.set_role(str(existing.id), "admin")
            return existing
        if not password:
            raise InvalidArgument(
                "a password is required for a new account", [FieldViolation("password", "is required", "REQUIRED")]
            )
        check_policy(password, "password", email=email)
        now = utcnow()
        user = User(uuid.uuid4(), email, await self.hasher.hash(password), display_name, "admin", False, now, now)
        await self.users.add(user)
        return user
