"""AccountDirectory over the auth service's LookupUser (service identity)."""

from __future__ import annotations

from devpynode.auth.v1 import auth_pb2, auth_pb2_grpc

from pynode.chat.ports import Account
from pynode.core.errors import NotFound
from pynode.core.peers import PeerClient

LOOKUP_BUDGET_SECONDS = 5.0


class GrpcAccounts(PeerClient):
    """Finds members to invite by e-mail."""

    service = "auth"

    async def enabled_user(self, *, email: str = "", user_id: str = "") -> Account | None:
        stub = auth_pb2_grpc.AuthServiceStub(self.channel)
        options = await self.options(as_user=False, budget_seconds=LOOKUP_BUDGET_SECONDS)
        request = auth_pb2.LookupUserRequest(email=email, user_id=user_id)
        try:
            response = await self.unary(stub.LookupUser(request, **options))
        except NotFound:
            return None
        return Account(response.user_id, response.display_name)
