"""Turns bearer tokens into principals: signature and claims, then the session must still be live."""

from __future__ import annotations

from pynode.auth.sessions import SessionStore
from pynode.auth.tokens import SERVICE, TokenVerifier
from pynode.core.errors import Unauthenticated
from pynode.core.principal import Principal


class TokenAuthenticator:
    """The edge's Authenticator: a revoked session's access tokens fail at once, not at expiry."""

    def __init__(self, verifier: TokenVerifier, sessions: SessionStore) -> None:
        self._verifier = verifier
        self._sessions = sessions

    async def authenticate(self, token: str) -> Principal:
        claims = self._verifier.remembered(token) or await self._verifier.verify(token)
        if claims.typ == SERVICE:
            return Principal(claims.subject, SERVICE)
        holder = await self._sessions.holder(claims.session_id)
        if holder is None or holder[0] != claims.subject:
            raise Unauthenticated("session has ended; sign in again", reason="SESSION_REVOKED")
        # The session's role, not the token's: role changes apply before the token expires.
        return Principal(claims.subject, holder[1], claims.session_id)
