"""Refresh rotation, reuse detection, logout and session management, effective at once."""

from __future__ import annotations

import asyncio

import grpc
from devpynode.auth.v1 import auth_pb2

from tests.client import MeshClient, fails, new_email


async def _refresh(client: MeshClient, token: str) -> auth_pb2.TokenPair:
    response = await client.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=token), metadata=client.md(""))
    return response.tokens


async def test_refresh_rotates_and_keeps_the_absolute_lifetime(client: MeshClient) -> None:
    first = (await client.register()).tokens
    second = await _refresh(client, first.refresh_token)
    assert second.refresh_token != first.refresh_token and second.access_token != first.access_token
    assert second.refresh_token_expires_at == first.refresh_token_expires_at
    third = await _refresh(client, second.refresh_token)
    await client.me(token=third.access_token)


async def test_reuse_after_grace_revokes_the_whole_family(client: MeshClient) -> None:
    first = (await client.register()).tokens
    second = await _refresh(client, first.refresh_token)
    await asyncio.sleep(1.1)  # past the 1 s grace window of the test settings
    reuse = await fails(_refresh(client, first.refresh_token))
    assert reuse.code == grpc.StatusCode.UNAUTHENTICATED and reuse.reason == "REFRESH_TOKEN_REUSED"
    assert (await fails(_refresh(client, second.refresh_token))).reason == "SESSION_ENDED"
    assert (await fails(client.me(token=second.access_token))).reason == "SESSION_REVOKED"


async def test_replay_within_grace_gets_the_same_successor(client: MeshClient) -> None:
    first = (await client.register()).tokens
    lost = await _refresh(client, first.refresh_token)  # the client never saw this response
    retried = await _refresh(client, first.refresh_token)
    assert retried.refresh_token == lost.refresh_token  # the lost response again: no second branch
    await client.me(token=retried.access_token)
    third = await _refresh(client, lost.refresh_token)
    # Once the successor has itself been used, the old token is reuse, even inside the grace window.
    reuse = await fails(_refresh(client, first.refresh_token))
    assert reuse.reason == "REFRESH_TOKEN_REUSED"
    assert (await fails(client.me(token=third.access_token))).reason == "SESSION_REVOKED"


async def test_concurrent_refreshes_never_both_consume_one_token(client: MeshClient) -> None:
    first = (await client.register()).tokens
    results = await asyncio.gather(*(_refresh(client, first.refresh_token) for _ in range(5)), return_exceptions=True)
    tokens = [r for r in results if isinstance(r, auth_pb2.TokenPair)]
    # One rotation happened; the others are grace replays answered with its successor.
    assert len(tokens) == 5 and len({t.refresh_token for t in tokens}) == 1
    await _refresh(client, tokens[0].refresh_token)


async def test_malformed_and_unknown_refresh_tokens(client: MeshClient) -> None:
    assert (await fails(_refresh(client, "garbage"))).code == grpc.StatusCode.UNAUTHENTICATED
    assert (await fails(_refresh(client, "4c1f6c38-7f0c-4d9b-9d49-000000000000.secret"))).reason == "SESSION_ENDED"
    empty = await fails(_refresh(client, ""))
    assert empty.code == grpc.StatusCode.INVALID_ARGUMENT and empty.violations() == {"refresh_token": "REQUIRED"}


async def test_logout_ends_this_session_at_once(client: MeshClient) -> None:
    email = new_email()
    tokens = (await client.register(email)).tokens
    other = client.as_other_address()
    await other.login(email)
    await client.auth.Logout(auth_pb2.LogoutRequest(), metadata=client.md())
    assert (await fails(client.me(token=tokens.access_token))).reason == "SESSION_REVOKED"
    assert (await fails(_refresh(client, tokens.refresh_token))).reason == "SESSION_ENDED"
    await other.me()


async def test_logout_all_sessions(client: MeshClient) -> None:
    email = new_email()
    await client.register(email)
    other = client.as_other_address()
    await other.login(email)
    await client.auth.Logout(auth_pb2.LogoutRequest(all_sessions=True), metadata=client.md())
    assert (await fails(other.me())).reason == "SESSION_REVOKED"
    assert (await fails(client.me())).reason == "SESSION_REVOKED"


async def test_list_sessions_pages_and_marks_the_current_one(client: MeshClient) -> None:
    email = new_email()
    await client.register(email)
    other = client.as_other_address()
    await other.login(email)
    await other.login(email)
    seen: list[auth_pb2.Session] = []
    token = ""
    while True:
        page = await client.auth.ListSessions(
            auth_pb2.ListSessionsRequest(page_size=2, page_token=token),
            metadata=client.md(**{"user-agent": "ignored-after-login"}),
        )
        seen.extend(page.sessions)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 3 and len({s.id for s in seen}) == 3
    assert sum(s.current for s in seen) == 1
    mine = next(s for s in seen if s.current)
    assert mine.ip_address == client.address
    assert {s.ip_address for s in seen if not s.current} == {other.address}
    assert all(s.user_agent and s.created_at.seconds and s.expires_at.seconds > s.created_at.seconds for s in seen)
    bad = await fails(client.auth.ListSessions(auth_pb2.ListSessionsRequest(page_token="%%%"), metadata=client.md()))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.violations() == {"page_token": "BAD_PAGE_TOKEN"}


async def test_revoke_session_only_for_its_owner(client: MeshClient) -> None:
    email = new_email()
    await client.register(email)
    other = client.as_other_address()
    await other.login(email)
    sessions = (await client.auth.ListSessions(auth_pb2.ListSessionsRequest(), metadata=client.md())).sessions
    target = next(s for s in sessions if not s.current)
    stranger = client.as_other_address()
    await stranger.register()
    denied = await fails(
        stranger.auth.RevokeSession(auth_pb2.RevokeSessionRequest(session_id=target.id), metadata=stranger.md())
    )
    assert denied.code == grpc.StatusCode.NOT_FOUND
    await other.me()
    await client.auth.RevokeSession(auth_pb2.RevokeSessionRequest(session_id=target.id), metadata=client.md())
    assert (await fails(other.me())).reason == "SESSION_REVOKED"
    await client.me()


async def test_forged_page_tokens_are_invalid_not_internal(client: MeshClient) -> None:
    from pynode.core.paging import encode_token

    await client.register()
    for forged in (encode_token({"o": "abc"}), encode_token({"o": -5}), encode_token({"o": 1.5})):
        error = await fails(
            client.auth.ListSessions(auth_pb2.ListSessionsRequest(page_token=forged), metadata=client.md())
        )
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.violations() == {"page_token": "BAD_PAGE_TOKEN"}
