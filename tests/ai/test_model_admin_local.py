"""The local provider in ModelAdminService: its configured GGUF models listed, and switching the one served
(the real llama.cpp child, on the real backend set that carries it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from devpynode.ai.v1 import ai_pb2, models_pb2

from pynode.ai.local_model import resolve
from tests.ai.model_admin_client import admin_of, pull_fails
from tests.client import fails

real_only = pytest.mark.parametrize("backend", ["real"], indirect=True)


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
async def test_configured_models_are_listed_and_a_broken_one_cannot_be_switched_to(ai: Any, tmp_path: Path) -> None:
    missing = tmp_path / "Tiny-Model.Q4_K_M.gguf"
    other = tmp_path / "other-IQ3_XXS.gguf"
    _, admin = await admin_of(lambda: ai(ai_local_model=str(missing), ai_local_models=f"{other}, {missing}"))
    local = [m for m in (await admin.models("providers/local")).provider_models]
    assert [m.model_id for m in local] == ["local/other-iq3_xxs", "local/tiny-model.q4_k_m"]
    served = {m.model_id: m for m in local}["local/tiny-model.q4_k_m"]
    assert served.quantization == "Q4_K_M" and served.format == "gguf" and not served.loaded
    assert "does not exist" in served.description and not served.actions
    assert {m.model_id: m for m in local}["local/other-iq3_xxs"].quantization == "IQ3_XXS"
    load = await fails(
        admin.stub.LoadProviderModel(
            models_pb2.LoadProviderModelRequest(name="local/other-iq3_xxs"), metadata=admin.md()
        )
    )
    assert load.code == grpc.StatusCode.FAILED_PRECONDITION and "does not exist" in load.message
    unknown = await fails(
        admin.stub.GetProviderModel(models_pb2.GetProviderModelRequest(name="local/nosuch"), metadata=admin.md())
    )
    assert unknown.code == grpc.StatusCode.NOT_FOUND and "DEVPYNODE_AI_LOCAL_MODELS" in unknown.message
    pulled = await pull_fails(admin.pull("local/other-iq3_xxs"))
    assert pulled.code == grpc.StatusCode.FAILED_PRECONDITION and pulled.reason == "ACTION_NOT_SUPPORTED"


@real_only
async def test_switching_the_served_local_model(ai: Any, local_model_installed: None) -> None:
    gguf = resolve("smollm2").path  # the same file under a second name: a second configured model
    user, admin = await admin_of(lambda: ai(ai_local_model="smollm2", ai_local_models=str(gguf)))
    second = f"local/{gguf.stem.lower()}"

    async def loaded() -> dict[str, bool]:
        return {m.model_id: m.loaded for m in (await admin.models("providers/local")).provider_models}

    states: dict[str, bool] = {}

    async def served(model: str) -> bool:
        states.update(await loaded())
        return states.get(model, False)

    for _ in range(600):  # the child loads the model in the background (a few seconds here)
        if await served("local/smollm2"):
            break
        await asyncio.sleep(0.1)
    assert states == {"local/smollm2": True, second: False}

    switched = await admin.stub.LoadProviderModel(
        models_pb2.LoadProviderModelRequest(name=second), metadata=admin.md(), timeout=240
    )
    assert switched.provider_model.loaded and switched.provider_model.model_id == second
    assert await loaded() == {"local/smollm2": False, second: True}
    listed = await user.stub.ListModels(ai_pb2.ListModelsRequest(), metadata=user.user.md())
    assert {m.id: m.available for m in listed.models if m.provider == "local"} == {second: True}
    answer = await user.ask(second, "Say hi.", max_tokens=3, temperature=0.0, no_cache=True)
    assert answer.last.model == second and answer.last.usage.completion_tokens > 0
    assert admin.actions("load", "ok") == 1
