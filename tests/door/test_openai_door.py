"""The OpenAI-compatible door through the laptop's gateway (Envoy in front of `devpynode serve`), spoken by real
clients: the official `openai` package (whole and streamed answers, tools, embeddings, errors as its exception
classes, a stream closed mid-way) and `curl`; and bad input, which always gets OpenAI's JSON error with a 4xx.

Calls carry a credential as `Authorization: Bearer`: an access token or a personal API key (the two variants of
the `credential` fixture). Every test runs against both ways the door reaches the router when it runs in the same
process (the `gateway` fixture's two variants): in-process through the router's own edge (the default) and over
loopback gRPC (DEVPYNODE_DOOR_IN_PROCESS=false); both must answer alike, errors, cancels and revocations included.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import openai
import pytest

from tests.client import PASSWORD, new_email
from tests.gateway.test_local_gateway import _port, _serve

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    },
}
Credential = Callable[[], Awaitable[str]]


@pytest.fixture(scope="module", params=["in_process", "grpc"])
async def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    port = _port()
    in_process = request.param == "in_process"
    # Every test signs a new user up from this one address (twice for a key): above the default 30 a minute.
    process, _, banner = await _serve(
        tmp_path_factory.mktemp("door"),
        port,
        {"DEVPYNODE_RATE_LIMIT_PER_MINUTE": "1000", "DEVPYNODE_DOOR_IN_PROCESS": str(in_process).lower()},
    )
    assert any("the OpenAI-compatible API at /v1" in line for line in banner), banner
    path = "to the AI router in this process" if in_process else "to the AI router over gRPC"
    assert any(path in line for line in banner), banner
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()


async def _access_token(base: str) -> str:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{base}/v1/auth:register", json={"email": new_email(), "password": PASSWORD, "displayName": "Door"}
        )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["tokens"]["accessToken"])


async def _api_key(base: str, scope: str = "API_KEY_SCOPE_AI") -> str:
    """A fresh user's personal API key (AI scope: what an OpenAI client needs), made over REST."""
    token = await _access_token(base)
    async with httpx.AsyncClient() as http:
        made = await http.post(
            f"{base}/v1/api-keys",
            json={"name": "openai sdk", "scope": scope},
            headers={"authorization": f"Bearer {token}"},
        )
    assert made.status_code == 200, made.text
    return str(made.json()["secret"])


@pytest.fixture(params=["access_token", "api_key"])
def credential(request: pytest.FixtureRequest, gateway: str) -> Credential:
    """A fresh user's credential for `Authorization: Bearer` (each call makes a new user): an access token, or
    a personal API key, the credential an OpenAI client is meant to hold."""
    if request.param == "access_token":
        return lambda: _access_token(gateway)
    if request.param == "api_key":
        return lambda: _api_key(gateway)
    raise AssertionError(request.param)


async def test_a_revoked_or_read_only_key_is_refused_in_openais_shape(gateway: str) -> None:
    token = await _access_token(gateway)
    session = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=gateway) as http:
        made = (await http.post("/v1/api-keys", json={"name": "soon revoked"}, headers=session)).json()
        key = {"authorization": f"Bearer {made['secret']}"}
        assert (await http.get("/v1/models", headers=key)).status_code == 200
        revoked = await http.post(f"/v1/api-keys/{made['apiKey']['id']}:revoke", json={}, headers=session)
        assert revoked.status_code == 200, revoked.text
        refused = await http.get("/v1/models", headers=key)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["type"] and "traceback" not in refused.text.lower()
    reader = await _api_key(gateway, "API_KEY_SCOPE_READ_ONLY")
    async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=reader, max_retries=0) as sdk:
        with pytest.raises(openai.PermissionDeniedError):
            await sdk.chat.completions.create(
                model="builtin/echo", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )


async def test_a_key_revoked_mid_stream_ends_the_stream_and_its_usage_is_counted(gateway: str) -> None:
    token = await _access_token(gateway)
    session = {"authorization": f"Bearer {token}"}
    words = 3000  # 100 s at the development pace: only the revocation ends it within the test
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
        made = (await http.post("/v1/api-keys", json={"name": "revoked mid-stream"}, headers=session)).json()
        async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=made["secret"], max_retries=0) as sdk:
            stream = await sdk.chat.completions.create(
                model="builtin/echo", messages=[{"role": "user", "content": " ".join(["word"] * words)}], stream=True
            )
            got = 0
            with pytest.raises(openai.APIError) as ended:
                async for chunk in stream:
                    got += len((chunk.choices[0].delta.content or "").split()) if chunk.choices else 0
                    if got >= 3 and made:
                        revoked = await http.post(
                            f"/v1/api-keys/{made['apiKey']['id']}:revoke", json={}, headers=session
                        )
                        assert revoked.status_code == 200, revoked.text
                        made = {}
            assert "revoked" in str(ended.value) and got < words
        usage: list[dict[str, Any]] = []
        for _ in range(200):  # the ledger is written behind the stream's end
            usage = await _usage(http, session)
            if usage and int(usage[0]["unfinishedRequests"]) == 1:
                break
            await asyncio.sleep(0.05)
        (row,) = usage
        assert int(row["requests"]) == 1 and 3 <= int(row["usage"]["completionTokens"]) < words


@pytest.fixture
async def client(gateway: str, credential: Credential) -> AsyncIterator[openai.AsyncOpenAI]:
    # No retries: a 429 or 503 must reach the test, not be retried by the client.
    async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=await credential(), max_retries=0) as made:
        yield made


async def test_models_are_the_routers_ids_and_aliases(client: openai.AsyncOpenAI) -> None:
    listed = [m async for m in client.models.list()]
    ids = {m.id for m in listed}
    assert {"builtin/echo", "default"} <= ids
    assert all(m.object == "model" for m in listed)
    echo = await client.models.retrieve("builtin/echo")
    assert echo.id == "builtin/echo" and echo.owned_by == "builtin"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("nowhere/nothing")


async def test_a_whole_answer_with_every_kind_of_message(client: openai.AsyncOpenAI) -> None:
    answer = await client.chat.completions.create(
        model="builtin/echo",
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "earlier question"},
            {"role": "assistant", "content": "earlier answer"},
            {"role": "user", "content": [{"type": "text", "text": "one two "}, {"type": "text", "text": "three"}]},
        ],
        temperature=0.5,
        top_p=0.9,
        seed=7,
        stop=["never-said"],
        max_completion_tokens=50,
    )
    choice = answer.choices[0]
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and choice.message.content == "one two three"
    assert choice.finish_reason == "stop" and answer.model == "builtin/echo"
    assert answer.usage is not None and answer.usage.completion_tokens == 3
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 3
    cut = await client.chat.completions.create(
        model="builtin/echo", messages=[{"role": "user", "content": "a b c d e"}], max_tokens=2
    )
    assert cut.choices[0].finish_reason == "length" and cut.usage is not None and cut.usage.completion_tokens == 2


async def test_a_streamed_answer_ends_with_its_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="builtin/echo",
        messages=[{"role": "user", "content": "streamed one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streamed one two three"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])
    # Without include_usage no usage chunk is sent.
    plain = await client.chat.completions.create(
        model="builtin/echo", messages=[{"role": "user", "content": "no usage"}], stream=True
    )
    assert all(c.choices and c.usage is None for c in [c async for c in plain])


async def test_tool_calls_whole_and_streamed_and_the_results_sent_back(client: openai.AsyncOpenAI) -> None:
    asked: list[Any] = [{"role": "user", "content": "Paris"}]
    answer = await client.chat.completions.create(
        model="builtin/echo",
        messages=asked,
        tools=[WEATHER],
        tool_choice="required",  # type: ignore[list-item]
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"text": "Paris"}  # type: ignore[union-attr]
    followed = await client.chat.completions.create(
        model="builtin/echo",
        messages=[
            *asked,
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 degrees"},
        ],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert followed.choices[0].message.content == "sunny, 21 degrees"
    assert followed.choices[0].finish_reason == "stop"
    stream = await client.chat.completions.create(
        model="builtin/echo",
        messages=asked,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    deltas = [
        d for chunk in [c async for c in stream] if chunk.choices for d in chunk.choices[0].delta.tool_calls or ()
    ]
    assert deltas[0].id and deltas[0].type == "function" and deltas[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert all(d.index == 0 for d in deltas) and all(d.id is None for d in deltas[1:])
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"text": "Paris"}  # type: ignore[union-attr]


async def test_embeddings_as_floats_and_as_base64(client: openai.AsyncOpenAI) -> None:
    floats = await client.embeddings.create(
        model="builtin/echo", input=["red apple", "red apple pie", "blue sky"], encoding_format="float"
    )
    vectors = [e.embedding for e in floats.data]
    assert [e.index for e in floats.data] == [0, 1, 2] and {len(v) for v in vectors} == {64}

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2])
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 0
    # The SDK's default asks for base64 and decodes it: the same vectors.
    decoded = await client.embeddings.create(model="builtin/echo", input="red apple")
    assert decoded.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)


async def test_errors_are_the_sdks_exception_classes(gateway: str, client: openai.AsyncOpenAI) -> None:
    hello: Any = [{"role": "user", "content": "hello"}]
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(model="nowhere/nothing", messages=hello)
    assert missing.value.body["param"] == "model" and missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as invalid:
        await client.chat.completions.create(model="builtin/echo", messages=hello, temperature=5)
    assert invalid.value.body["param"] == "temperature"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as not_embedding:  # the router's word: not an embedding model
        await client.embeddings.create(model="nowhere/nothing", input="x")
    assert not_embedding.value.body["param"] == "model"  # type: ignore[index]
    async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="not-a-key", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError):
            await wrong.chat.completions.create(model="builtin/echo", messages=hello)
        with pytest.raises(openai.AuthenticationError):
            await wrong.models.list()


async def test_too_many_streams_is_429_with_retry_after(gateway: str, credential: Credential) -> None:
    """DEVPYNODE_AI_STREAMS_PER_USER (4) streams at once: the fifth is refused with 429 and Retry-After."""
    token = await credential()
    auth = {"authorization": f"Bearer {token}"}
    long = {
        "model": "builtin/echo",
        "messages": [{"role": "user", "content": " ".join(["slow"] * 2000)}],  # 30 tokens/s in dev mode
        "stream": True,
    }
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        opened = []
        lines = []  # each response's one line iterator, kept: a dropped one closes its response
        try:
            for _ in range(4):
                request = http.build_request("POST", "/v1/chat/completions", json=long, headers=auth)
                response = await http.send(request, stream=True)
                opened.append(response)
                assert response.status_code == 200
                lines.append(response.aiter_lines())
                assert (await anext(lines[-1])).startswith("data: ")  # the generation is running
            refused = await http.post("/v1/chat/completions", json=long, headers=auth)
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"]["type"] == "rate_limit_error"
            async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=token, max_retries=0) as sdk:
                with pytest.raises(openai.RateLimitError):
                    await sdk.chat.completions.create(model="builtin/echo", messages=long["messages"], stream=True)  # type: ignore[call-overload]
        finally:
            for response in opened:
                await response.aclose()


async def _usage(http: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    answer = await http.get("/v1/ai/usage", headers=auth)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["models"])


async def test_a_client_that_hangs_up_cancels_the_generation_and_its_usage_is_counted(
    gateway: str, credential: Credential
) -> None:
    token = await credential()
    auth = {"authorization": f"Bearer {token}"}
    words = 3000  # 100 s at the development pace: only a cancellation ends it within the test
    async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=token, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(
            model="builtin/echo", messages=[{"role": "user", "content": " ".join(["word"] * words)}], stream=True
        )
        got = 0
        async for chunk in stream:
            got += len((chunk.choices[0].delta.content or "").split()) if chunk.choices else 0
            if got >= 3:
                break
        await stream.close()  # the connection closes; Envoy resets the door's, the door cancels the router's call
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
        usage: list[dict[str, Any]] = []
        for _ in range(200):  # the ledger is written behind the stream's end
            usage = await _usage(http, auth)
            if usage and int(usage[0]["unfinishedRequests"]) == 1:
                break
            await asyncio.sleep(0.05)
        (row,) = usage
        assert row["model"] == "builtin/echo" and int(row["requests"]) == 1 and int(row["unfinishedRequests"]) == 1
        counted = int(row["usage"]["completionTokens"])
        assert 3 <= counted < words  # what was generated up to the hang-up, not the whole answer
        # The user's stream slot is free again: the router really ended the generation.
        again = await http.post(
            "/v1/chat/completions",
            json={"model": "builtin/echo", "messages": [{"role": "user", "content": "after"}]},
            headers=auth,
        )
        assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"] == "after"


async def test_curl_streams_server_sent_events_ending_in_done(gateway: str, credential: Credential) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    token = await credential()
    body = json.dumps(
        {"model": "builtin/echo", "messages": [{"role": "user", "content": "hi from curl"}], "stream": True}
    )
    process = await asyncio.create_subprocess_exec(
        curl, "-sS", "-N", "--fail-with-body", f"{gateway}/v1/chat/completions",
        "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json", "-d", body,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    events = [line[len("data: ") :] for line in out.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "hi from curl"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def _asking(extra: bytes) -> bytes:
    """A valid request body with one more field."""
    return b'{"model": "builtin/echo", "messages": [{"role": "user", "content": "x"}], ' + extra + b"}"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model": "builtin/echo", "messages": [', None),  # malformed JSON
        (b'["a", "list"]', "body"),
        (b'{"model": "builtin/echo"}', "messages"),
        (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "builtin/echo", "messages": "hello"}', "messages"),
        (b'{"model": "builtin/echo", "messages": [{"role": "robot", "content": "x"}]}', "messages[0].role"),
        (b'{"model": "builtin/echo", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
        (_asking(b'"temperature": "hot"'), "temperature"),
        (b'{"model": "builtin/echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}', "max_tokens"),
        (b'{"model": "builtin/echo", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
        (b'{"model": "builtin/echo", "messages": [{"role": "user", "content": "x"}], "n": 3}', "n"),
        (b'{"model": "builtin/echo", "messages": [{"role": "user", "content": "x"}], "wibble": 1}', "wibble"),
        (b'{"model": "builtin/echo", "messages": [{"role": "user", "content": "x"}], "tools": {}}', "tools"),
        (_asking(b'"tool_choice": "sometimes"'), "tool_choice"),
        # Nested past orjson's writer (an attack got a 500 and a logged traceback).
        (_asking(b'"tools": [{"type": "function", "function": {"name": "deep", "parameters": '
                 + b'{"a": ' * 300 + b'{}' + b'}' * 300 + b'}}]'), "tools[0].function.parameters"),
        (b'{"model": "builtin/echo", "messages": [{"role": "user", "content": "' + b"x" * 300_000 + b'"}]}',
         "messages[0].content"),
    ],
)  # fmt: skip
async def test_bad_chat_bodies_are_400_with_the_param(
    gateway: str, credential: Credential, body: bytes, param: str | None
) -> None:
    auth = {"authorization": f"Bearer {await credential()}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        answer = await http.post("/v1/chat/completions", content=body, headers=auth)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["message"]


async def test_other_bad_requests_are_clear_4xx_in_openais_shape(gateway: str, credential: Credential) -> None:
    auth = {"authorization": f"Bearer {await credential()}"}
    hello = {"model": "builtin/echo", "messages": [{"role": "user", "content": "x"}]}
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        cases = {
            "no key": await http.post("/v1/chat/completions", json=hello),
            "not bearer": await http.post("/v1/chat/completions", json=hello, headers={"authorization": "Basic eDp5"}),
            "forged": await http.get("/v1/models", headers={"authorization": "Bearer not.a.token"}),
            "huge": await http.post(
                "/v1/chat/completions", content=b"{" + b" " * (3 * 1024 * 1024) + b"}", headers=auth
            ),
            "huge and invalid": await http.post("/v1/embeddings", content=b"x" * (8 * 1024 * 1024), headers=auth),
            "wrong method": await http.get("/v1/chat/completions", headers=auth),
            "embedding of numbers": await http.post(
                "/v1/embeddings", json={"model": "builtin/echo", "input": [[1, 2, 3]]}, headers=auth
            ),
            "embedding unknown field": await http.post(
                "/v1/embeddings", json={"model": "builtin/echo", "input": "x", "colour": "red"}, headers=auth
            ),
            "image by url": await http.post(
                "/v1/chat/completions",
                json={
                    "model": "builtin/echo",
                    "messages": [
                        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}
                    ],
                },
                headers=auth,
            ),
        }
    expected = {
        "no key": 401,
        "not bearer": 401,
        "forged": 401,
        "huge": 413,
        "huge and invalid": 413,
        "wrong method": 405,
        "embedding of numbers": 400,
        "embedding unknown field": 400,
        "image by url": 400,
    }
    assert {name: answer.status_code for name, answer in cases.items()} == expected, {
        n: a.text[:200] for n, a in cases.items()
    }
    for answer in cases.values():
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        assert "Traceback" not in answer.text
    assert cases["embedding unknown field"].json()["error"]["param"] == "colour"
    assert cases["image by url"].json()["error"]["param"] == "messages[0].content[0].image_url"
