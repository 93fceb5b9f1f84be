"""Personal API keys through Envoy, over REST/JSON as `curl` sends them and over grpc-web as a browser does:
created with a session, then used alone."""

from __future__ import annotations

import httpx
from devpynode.auth.v1 import auth_pb2

from tests.gateway.grpcweb import call, decoded
from tests.gateway.test_rest import _signed_in, rest  # noqa: F401 - the module's serving fixture


async def test_a_key_made_over_rest_works_there_within_its_scope_until_revoked(rest: str) -> None:  # noqa: F811
    async with httpx.AsyncClient() as http:
        session = await _signed_in(http, rest)
        made = await http.post(
            f"{rest}/v1/api-keys", json={"name": "curl", "scope": "API_KEY_SCOPE_AI"}, headers=session
        )
        assert made.status_code == 200, made.text
        secret, key = made.json()["secret"], made.json()["apiKey"]
        assert secret.startswith("dpn_") and key["scope"] == "API_KEY_SCOPE_AI"
        bearer = {"authorization": f"Bearer {secret}"}
        me = await http.get(f"{rest}/v1/users/me", headers=bearer)
        assert me.status_code == 200 and me.json()["user"]["id"] == key["userId"]
        web = await call(
            http, f"{rest}/devpynode.auth.v1.AuthService/GetCurrentUser", auth_pb2.GetCurrentUserRequest(), secret
        )
        assert web.status == 0 and decoded(web, auth_pb2.GetCurrentUserResponse)[0].user.id == key["userId"]
        models = await http.get(f"{rest}/v1/ai/models", headers=bearer)
        assert models.status_code == 200, models.text
        files = await http.get(f"{rest}/v1/files", headers=bearer)
        assert files.status_code == 403 and files.json()["details"][0]["reason"] == "API_KEY_SCOPE"
        listed = await http.get(f"{rest}/v1/api-keys", headers=session)
        assert secret not in listed.text and [k["id"] for k in listed.json()["apiKeys"]] == [key["id"]]
        bad = await http.post(f"{rest}/v1/api-keys", json={"name": ""}, headers=session)
        assert bad.status_code == 400 and "name" in bad.text
        revoked = await http.post(f"{rest}/v1/api-keys/{key['id']}:revoke", json={}, headers=session)
        assert revoked.status_code == 200 and revoked.json()["apiKey"]["revokeTime"]
        after = await http.get(f"{rest}/v1/users/me", headers=bearer)
        assert after.status_code == 401 and after.json()["details"][0]["reason"] == "API_KEY_REVOKED"
