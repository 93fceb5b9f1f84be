"""The `local` provider: a real llama.cpp model (SmolLM2) behind the OpenAI-compatible adapter, as a child of
`serve` or a server of its own; and what is listed when it cannot start. Assertions are on the stream's shape
and the server's behaviour, never on the model's words."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

import grpc
import pytest
from devpynode.ai.v1 import ai_pb2

from pynode.ai.local_model import LocalProvider
from pynode.core.settings import SettingsError
from tests.ai.conftest import AIClient, stream_error
from tests.client import eventually
from tests.conftest import LocalModelServer

MODEL = "local/smollm2"
LONG = "Write a long story about a cat who learns to sail."
# The real backend set carries the real model: on the embedded set these would only repeat themselves.
real_only = pytest.mark.parametrize("backend", ["real"], indirect=True)


async def _models(client: AIClient) -> dict[str, ai_pb2.Model]:
    response = await client.stub.ListModels(ai_pb2.ListModelsRequest(), metadata=client.user.md())
    return {m.id: m for m in response.models}


def _local(client: AIClient) -> LocalProvider:
    provider = client.parts.router.providers["local"]
    assert isinstance(provider, LocalProvider)
    return provider


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
async def test_a_local_model_that_cannot_start_is_listed_unavailable_and_the_rest_serves(
    ai: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "Tiny-Model.Q4.gguf"
    with caplog.at_level(logging.ERROR, logger="pynode.ai.local"):
        client: AIClient = await ai(ai_local_model=str(missing))
    lines = [r.getMessage() for r in caplog.records if r.name == "pynode.ai.local"]
    assert len(lines) == 1 and str(missing) in lines[0] and "does not exist" in lines[0]
    models = await _models(client)
    local = models["local/tiny-model.q4"]
    assert not local.available and local.provider == "local" and "does not exist" in local.description
    assert (await client.ask("builtin/echo", "still here")).text == "still here"
    _, error = await stream_error(client.generate("local/tiny-model.q4", "hi"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(SettingsError, match="DEVPYNODE_AI_LOCAL_MODEL: 'llama-3-70b' is neither a known model"):
        await ai(ai_local_model="llama-3-70b")


@real_only
async def test_the_real_model_streams_an_answer_counted_token_by_token(ai: Any, local_model: LocalModelServer) -> None:
    client: AIClient = await ai(ai_local_url=local_model.url, ai_local_model="smollm2")
    models = await _models(client)
    assert models[MODEL].available and models[MODEL].provider == "local"
    answer = await client.ask(MODEL, LONG, max_tokens=12, temperature=0.0, no_cache=True)
    last = answer.last
    assert answer.text.strip() and answer.pieces[0].text  # the first token goes out on its own
    assert len(answer.pieces) >= 2 and last.model == MODEL
    # llama-cpp-python's server sends one token per chunk and no usage chunk (it ignores stream_options): the
    # completion is counted from the chunks, so a capped answer counts exactly max_tokens.
    assert last.finish_reason == ai_pb2.FINISH_REASON_LENGTH and last.usage.completion_tokens == 12
    assert last.usage.prompt_tokens > 0
    short = await client.ask(MODEL, "Say hi.", max_tokens=200, temperature=0.0, no_cache=True)
    assert short.last.finish_reason == ai_pb2.FINISH_REASON_STOP and 0 < short.last.usage.completion_tokens < 200
    usage = await client.stub.GetUsage(ai_pb2.GetUsageRequest(), metadata=client.user.md())
    counted = {m.model: m for m in usage.models}
    assert counted[MODEL].requests == 2
    assert counted[MODEL].usage.completion_tokens == 12 + short.last.usage.completion_tokens


@real_only
async def test_a_cancelled_answer_reaches_the_model_server(ai: Any, local_model: LocalModelServer) -> None:
    client: AIClient = await ai(ai_local_url=local_model.url, ai_local_model="smollm2")
    before = local_model.log_text().count("Disconnected from client")
    call = client.generate(MODEL, LONG, max_tokens=400, no_cache=True)
    seen = 0
    async for _ in call:
        seen += 1
        if seen == 3:
            break
    # Busy answering, it is still listed available (its own model list would wait for the answer to end).
    client.parts.router.refresh_catalog()
    assert (await _models(client))[MODEL].available
    call.cancel()
    # The server notices the closed connection at its next token and stops generating.
    await eventually(lambda: local_model.log_text().count("Disconnected from client") > before, 20)
    # And it is free at once for the next request (it serves one at a time).
    answer = await asyncio.wait_for(client.ask(MODEL, "Say hi.", max_tokens=4, no_cache=True), 20)
    assert answer.last.usage.completion_tokens >= 1


@real_only
async def test_serve_runs_the_model_as_a_child_restarts_it_and_stops_it(ai: Any, local_model_installed: None) -> None:
    client: AIClient = await ai(ai_local_model="smollm2", ai_local_context=1024)
    local = _local(client)
    assert local.server is not None
    server = local.server

    async def listed() -> ai_pb2.Model:
        return (await _models(client))[MODEL]

    assert (await listed()).provider == "local"  # listed at once, available once loaded
    await eventually(lambda: server.ready, 60)
    model = await listed()
    assert model.available and "ready" in model.description
    answer = await client.ask(MODEL, LONG, max_tokens=6, no_cache=True)
    assert answer.last.usage.completion_tokens == 6
    process = server._process
    assert process is not None and process.returncode is None
    os.kill(process.pid, signal.SIGKILL)
    await eventually(lambda: not server.ready, 15)
    assert not (await listed()).available  # the supervisor's word, at once
    await eventually(lambda: server.ready, 60)  # restarted after a pause
    assert server._process is not process and (await listed()).available
    again = await client.ask(MODEL, LONG, max_tokens=3, no_cache=True)
    assert again.last.usage.completion_tokens == 3
    restarted = server._process
    assert restarted is not None
    await local.close()  # what the mesh's closer does when the server stops
    assert restarted.returncode is not None and not server.ready


@real_only
async def test_a_model_that_crashes_at_load_is_restarted_and_says_why(
    ai: Any, local_model_installed: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)  # the magic, then nothing llama.cpp can read
    with caplog.at_level(logging.WARNING, logger="pynode.ai.local"):
        client: AIClient = await ai(ai_local_model=str(broken))
        server = _local(client).server
        assert server is not None

        def said() -> list[str]:
            return [r.getMessage() for r in caplog.records if "stopped at start" in r.getMessage()]

        await eventually(lambda: bool(said()), 60)
    assert "restarting in 1 s" in said()[0] and str(server.log_file) in said()[0]
    model = (await _models(client))["local/broken"]
    assert not model.available and not server.ready
    assert (await client.ask("builtin/echo", "the rest serves")).text == "the rest serves"
