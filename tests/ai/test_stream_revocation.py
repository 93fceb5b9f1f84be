"""A stream does not outlive its caller's right to it: a session signed out, or a personal API key revoked, while
an answer streams ends the stream with UNAUTHENTICATED at its next message (a second outside attack read a
revoked key's stream for 20 s more; new calls were already refused at once)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from devpynode.ai.v1 import ai_pb2
from devpynode.auth.v1 import api_keys_pb2, auth_pb2

from tests.ai.conftest import AIClient
from tests.auth.test_api_keys import create_key, keys_of


async def _read_until_refused(call: Any) -> tuple[int, grpc.aio.AioRpcError]:
    """Read a stream that must end refused: the pieces read after the first, and the error."""
    read = 0
    try:
        while (piece := await call.read()) is not grpc.aio.EOF:
            assert piece is not None
            read += 1
    except grpc.aio.AioRpcError as error:
        return read, error
    raise AssertionError(f"the stream ran to its end ({read} pieces) after its caller was signed out")


def _slow(client: AIClient, token: str | None = None) -> Any:
    # 200 words at 20 a second: ten seconds of answer, far more than the check needs to end it.
    request = client.request("builtin/echo", "word " * 200, tokens_per_second=20, no_cache=True, max_tokens=200)
    return client.stub.Generate(request, metadata=client.user.md(token), timeout=30)


@pytest.mark.parametrize("credential", ["session", "api_key"])
async def test_a_stream_ends_when_its_session_or_key_is_revoked(ai: Any, credential: str) -> None:
    client: AIClient = await ai()
    secret = None
    if credential == "api_key":
        made = await create_key(client.user, scope=api_keys_pb2.API_KEY_SCOPE_AI)
        secret = made.secret
    call = _slow(client, secret)
    first = await call.read()
    assert isinstance(first, ai_pb2.GenerateResponse)
    if secret is None:
        await client.user.auth.Logout(auth_pb2.LogoutRequest(), metadata=client.user.md())
    else:
        await keys_of(client.user).RevokeApiKey(
            api_keys_pb2.RevokeApiKeyRequest(api_key_id=made.api_key.id), metadata=client.user.md()
        )
    read, error = await _read_until_refused(call)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
    assert read < 100  # ended within a few seconds of 20 words each, not at the answer's end
