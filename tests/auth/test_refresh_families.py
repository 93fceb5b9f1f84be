"""A refresh token family has one live branch: a stolen pair does not outlive rotation, grace replays
neither fork nor evict the owner's token, and knowing a session id is not enough to end the session."""

from __future__ import annotations

import asyncio

import grpc
from devpynode.auth.v1 import auth_pb2

from pynode.app.server import MeshServer
from tests.client import MeshClient, fails
from tests.conftest import auth_of


async def _refresh(client: MeshClient, token: str) -> auth_pb2.TokenPair:
    response = await client.auth.RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=token), metadata=client.md(""))
    return response.tokens


async def test_a_thief_replaying_in_the_grace_window_gets_no_branch_of_its_own(client: MeshClient) -> None:
    stolen = (await client.register()).tokens.refresh_token  # the thief copied this once
    thief = client.as_other_address()
    successor = (await _refresh(client, stolen)).refresh_token  # the victim rotates
    replay = await _refresh(thief, stolen)  # the thief replays at once, inside the grace window
    assert replay.refresh_token == successor  # the successor already issued, not a second live branch
    current = (await _refresh(client, successor)).refresh_token  # the victim moves on
    reuse = await fails(_refresh(thief, stolen))
    assert reuse.code == grpc.StatusCode.UNAUTHENTICATED and reuse.reason == "REFRESH_TOKEN_REUSED"
    assert (await fails(_refresh(client, current))).reason == "SESSION_ENDED"


async def test_grace_replays_give_one_successor_and_never_evict_it(client: MeshClient) -> None:
    first = (await client.register()).tokens
    successor = (await _refresh(client, first.refresh_token)).refresh_token
    replays = await asyncio.gather(*(_refresh(client.as_other_address(), first.refresh_token) for _ in range(8)))
    assert {r.refresh_token for r in replays} == {successor}
    # The owner's next refresh (the "second tab" that did see the response) still works.
    following = await _refresh(client, successor)
    await client.me(token=following.access_token)


async def test_knowing_the_session_id_is_not_enough_to_end_the_session(client: MeshClient) -> None:
    tokens = (await client.register()).tokens
    sid = tokens.refresh_token.partition(".")[0]
    for guess in ("anything", "A" * 43, tokens.refresh_token.partition(".")[2][:-1] + "x"):
        error = await fails(_refresh(client.as_other_address(), f"{sid}.{guess}"))
        assert error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason == "INVALID_REFRESH_TOKEN"
    await client.me(token=tokens.access_token)  # still live
    await _refresh(client, tokens.refresh_token)  # and still rotates


async def test_an_old_token_of_the_family_is_reuse_long_after_rotation(client: MeshClient, mesh: MeshServer) -> None:
    chain = [(await client.register()).tokens.refresh_token]
    for _ in range(5):
        chain.append((await _refresh(client, chain[-1])).refresh_token)
    await asyncio.sleep(auth_of(mesh).service.sessions.grace_seconds + 0.1)  # type: ignore[attr-defined]
    reuse = await fails(_refresh(client.as_other_address(), chain[1]))
    assert reuse.reason == "REFRESH_TOKEN_REUSED"
    assert (await fails(_refresh(client, chain[-1]))).reason == "SESSION_ENDED"


async def test_the_store_does_not_hold_the_successor_in_the_clear(client: MeshClient, mesh: MeshServer) -> None:
    first = (await client.register()).tokens
    successor = (await _refresh(client, first.refresh_token)).refresh_token
    sid, _, secret = successor.partition(".")
    session = await auth_of(mesh).service.sessions.get(sid)
    assert session is not None and session.handoff
    record = repr(session)
    assert secret not in record and first.refresh_token.partition(".")[2] not in record
