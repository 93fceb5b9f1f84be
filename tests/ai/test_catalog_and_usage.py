"""ListModels, the routing file, the usage ledger and GetUsage, budgets and metrics."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
from devpynode.ai.v1 import ai_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from prometheus_client import generate_latest

from pynode.ai.config import load_config
from pynode.ai.settings import AISettings
from pynode.core.settings import SettingsError
from tests.ai.conftest import AIClient, stream_error
from tests.ai.fakes import FakeProvider
from tests.client import PASSWORD, fails, new_email, rich_error
from tests.conftest import auth_of


async def _models(client: AIClient) -> dict[str, ai_pb2.Model]:
    response = await client.stub.ListModels(ai_pb2.ListModelsRequest(), metadata=client.user.md())
    return {m.id: m for m in response.models}


async def test_list_models_shows_every_provider_and_says_when_one_is_down(ai: Any) -> None:
    client: AIClient = await ai()
    models = await _models(client)
    assert models["builtin/echo"].available and models["builtin/echo"].development
    assert models["ollama/llama3.2:latest"].available and models["ollama/llama3.2:latest"].provider == "ollama"
    assert models["openai/gpt-test"].available
    assert models["default"].provider == "alias" and models["default"].available
    down: AIClient = await ai(ollama_url="http://127.0.0.1:9")
    offline = await _models(down)
    assert not offline["ollama/*"].available and "127.0.0.1:9" in offline["ollama/*"].description
    assert offline["builtin/echo"].available


async def test_list_models_pages(ai: Any) -> None:
    client: AIClient = await ai()
    seen, token = [], ""
    while True:
        page = await client.stub.ListModels(
            ai_pb2.ListModelsRequest(page_size=2, page_token=token), metadata=client.user.md()
        )
        seen.extend(m.id for m in page.models)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(await _models(client)) and len(seen) > 2


def _routing_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(textwrap.dedent(text))
    return path


async def test_aliases_spread_by_weight_and_fall_back_in_order(
    ai: Any, ollama: FakeProvider, openai: FakeProvider, tmp_path: Path
) -> None:
    config = _routing_file(
        tmp_path,
        f"""
        providers:
          local: {{type: ollama, url: "{ollama.url}", keep_alive: 10m, options: {{num_ctx: 8192}}}}
          hosted: {{type: openai, url: "{openai.url}", models: [gpt-test]}}
        aliases:
          smart:
            deployments: [{{model: local/llama3.2:latest, weight: 3}}, {{model: hosted/gpt-test, weight: 1}}]
            fallbacks: [builtin/echo]
        """,
    )
    client: AIClient = await ai(ai_config=str(config))
    client.parts.router.random.seed(1)
    answered = Counter()
    for _ in range(40):
        answer = await client.ask("smart", "hi", no_cache=True)
        answered[answer.last.model] += 1
    assert answered["local/llama3.2:latest"] > answered["hosted/gpt-test"] > 0
    local = ollama.chats[-1].body
    assert local is not None and local["keep_alive"] == "10m" and local["options"]["num_ctx"] == 8192
    ollama.script.status = openai.script.status = 503
    answer = await client.ask("smart", "everything else is down", no_cache=True)
    assert answer.last.model == "builtin/echo" and answer.text == "everything else is down"


def test_a_bad_routing_file_is_one_line_per_mistake(tmp_path: Path) -> None:
    config = _routing_file(
        tmp_path,
        """
        providers:
          gpu: {type: vllm, url: "http://gpu:8000/v1"}
          builtin: {type: openai, url: "http://x/v1"}
        aliases:
          fast:
            deployments: [{model: nowhere/model, weight: 0}]
            fallbacks: [not-an-alias]
        """,
    )
    with pytest.raises(SettingsError) as raised:
        load_config(AISettings(ai_config=config))
    lines = str(raised.value).splitlines()
    assert lines and all(line.startswith(f"DEVPYNODE_AI_CONFIG ({config}): ") for line in lines)
    assert any("providers.gpu.type" in line for line in lines)
    assert any("aliases.fast.deployments.0.weight" in line for line in lines)
    fixed = _routing_file(
        tmp_path,
        """
        providers:
          builtin: {type: openai, url: "http://x/v1"}
        aliases:
          fast: {deployments: [{model: nowhere/model}], fallbacks: [not-an-alias]}
        """,
    )
    with pytest.raises(SettingsError) as raised:
        load_config(AISettings(ai_config=fixed))
    text = str(raised.value)
    assert "providers.builtin" in text and "no provider 'nowhere'" in text and "'not-an-alias'" in text
    (tmp_path / "broken.yaml").write_text("aliases: [unclosed")
    with pytest.raises(SettingsError, match="not valid YAML at line 1"):
        load_config(AISettings(ai_config=tmp_path / "broken.yaml"))


async def test_usage_is_totalled_per_model_for_the_caller_and_per_user_for_admins(ai: Any) -> None:
    client: AIClient = await ai()
    await client.ask("builtin/echo", "one two three")
    await client.ask("builtin/echo", "four five")
    await client.ask("openai/gpt-test", "x", no_cache=True)
    await client.ask("default", "via the alias", fallback_models=["builtin/echo"])
    await client.parts.service.drain()
    usage = await client.stub.GetUsage(ai_pb2.GetUsageRequest(), metadata=client.user.md())
    by_model = {m.model: m for m in usage.models}
    assert "default" not in by_model  # an alias counts under the model it chose (here Ollama's first)
    assert sum(m.requests for m in usage.models) == 4
    echo = by_model["builtin/echo"]
    assert (echo.requests, echo.usage.completion_tokens) == (2, 5)
    assert by_model["openai/gpt-test"].usage.prompt_tokens == 11
    assert usage.total.completion_tokens == sum(m.usage.completion_tokens for m in usage.models)
    later = Timestamp()
    later.GetCurrentTime()
    later.seconds += 3600
    empty = await client.stub.GetUsage(ai_pb2.GetUsageRequest(start_time=later), metadata=client.user.md())
    assert not empty.models
    other = client.user.as_other_address()
    registered = await other.register()
    denied = await fails(
        client.stub.GetUsage(ai_pb2.GetUsageRequest(user_id=registered.user.id), metadata=client.user.md())
    )
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    email = new_email()
    await auth_of(client.mesh).service.create_admin(email, PASSWORD, "Admin")
    admin = client.user.as_other_address()
    await admin.login(email)
    everyone = await client.stub.GetUsage(ai_pb2.GetUsageRequest(all_users=True), metadata=admin.md())
    me = (await client.user.me()).id
    mine = [u for u in everyone.users if u.user_id == me]  # the real-backend database is shared by tests
    assert len(mine) == 1 and mine[0].usage.completion_tokens == usage.total.completion_tokens
    theirs = await client.stub.GetUsage(ai_pb2.GetUsageRequest(user_id=me), metadata=admin.md())
    assert theirs.total.completion_tokens == usage.total.completion_tokens


async def test_daily_token_budgets_and_request_rates_are_enforced(ai: Any) -> None:
    client: AIClient = await ai(ai_tokens_per_day=10)
    await client.ask("builtin/echo", "one two three four five six")  # max_tokens cut to the 3 the budget leaves
    await client.parts.service.drain()
    _, raised = await stream_error(client.generate("builtin/echo", "again"))
    error = rich_error(raised)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason == "TOKEN_BUDGET_EXHAUSTED"
    assert error.detail(error_details_pb2.QuotaFailure).violations[0].subject == "ai:tokens_per_day"
    limited: AIClient = await ai(ai_requests_per_minute=2)
    for _ in range(2):
        await limited.ask("builtin/echo", "ok")
    _, raised = await stream_error(limited.generate("builtin/echo", "too many"))
    error = rich_error(raised)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.detail(error_details_pb2.QuotaFailure).violations[0].subject == "ai:requests_per_minute"


async def test_metrics_count_generations_per_provider_and_model(ai: Any) -> None:
    client: AIClient = await ai()
    await client.ask("builtin/echo", "measure this please")
    await client.ask("builtin/echo", "cached one", temperature=0)
    await client.ask("builtin/echo", "cached one", temperature=0)
    text = generate_latest(client.mesh.metrics.registry).decode()
    assert 'devpynode_ai_time_to_first_token_seconds_count{model="echo",provider="builtin"}' in text
    assert 'devpynode_ai_generations_total{finish_reason="stop",model="echo",provider="builtin"}' in text
    assert 'devpynode_ai_cache_lookups_total{model="echo",provider="builtin",result="hit"} 1.0' in text
    assert "devpynode_ai_queue_depth" in text and "devpynode_ai_tokens_per_second_bucket" in text
