"""ModelAdminService against the fake Ollama: listing, show, pull with progress and cancel, delete, load and
unload, the statuses of failures, the admin role, and the audit of each change."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import grpc
import ollama as ollama_client
import pytest
from devpynode.ai.v1 import models_pb2, models_pb2_grpc
from devpynode.auth.v1 import auth_pb2

from tests.ai.fake_ollama import FakeOllama, managed_ollama  # noqa: F401 - this module's `ollama`
from tests.ai.model_admin_client import admin_of, pull_fails
from tests.client import eventually, fails


async def test_users_cannot_manage_models(ai: Any) -> None:
    user, _ = await admin_of(ai)
    stub = models_pb2_grpc.ModelAdminServiceStub(user.user.channel)
    for call in (
        stub.ListProviderModels(models_pb2.ListProviderModelsRequest(), metadata=user.user.md()),
        stub.DeleteProviderModel(
            models_pb2.DeleteProviderModelRequest(name="ollama/llama3.2"), metadata=user.user.md()
        ),
    ):
        error = await fails(call)
        assert error.code == grpc.StatusCode.PERMISSION_DENIED and error.reason == "ROLE_REQUIRED"
    pull = stub.PullProviderModel(models_pb2.PullProviderModelRequest(name="ollama/x"), metadata=user.user.md(""))
    assert (await pull_fails(pull)).code == grpc.StatusCode.UNAUTHENTICATED


async def test_lists_every_provider_with_details_and_loaded_state(ai: Any, ollama: FakeOllama) -> None:
    _, admin = await admin_of(ai)
    listed = await admin.models()
    assert not listed.unreachable
    found = {m.model_id: m for m in listed.provider_models}
    llama = found["ollama/llama3.2:latest"]
    assert llama.name == "providers/ollama/models/llama3.2:latest"
    assert (llama.provider, llama.provider_kind, llama.family, llama.quantization) == (
        "ollama",
        "ollama",
        "llama",
        "Q4_K_M",
    )
    assert llama.size_bytes == 2019393189 and llama.context_length == 131072 and llama.parameter_size == "1.2B"
    assert list(llama.capabilities) == [
        models_pb2.PROVIDER_MODEL_CAPABILITY_COMPLETION,
        models_pb2.PROVIDER_MODEL_CAPABILITY_TOOLS,
    ]
    assert not llama.loaded and models_pb2.PROVIDER_MODEL_ACTION_PULL in llama.actions
    # Providers that do not manage their models here are listed, without actions.
    assert "builtin/echo" in found and "openai/gpt-test" in found and not found["openai/gpt-test"].actions
    paged, token = [], ""
    while True:
        page = await admin.stub.ListProviderModels(
            models_pb2.ListProviderModelsRequest(page_size=1, page_token=token), metadata=admin.md()
        )
        paged += [m.model_id for m in page.provider_models]
        token = page.next_page_token
        if not token:
            break
    assert paged == [m.model_id for m in listed.provider_models] and len(paged) >= 3
    only = await admin.models("providers/ollama")
    assert [m.model_id for m in only.provider_models] == ["ollama/llama3.2:latest"]

    loaded = await admin.stub.LoadProviderModel(
        models_pb2.LoadProviderModelRequest(name="providers/ollama/models/llama3.2"), metadata=admin.md()
    )
    assert loaded.provider_model.loaded and loaded.provider_model.loaded_vram_bytes == 5200
    assert ollama.loaded == {"llama3.2:latest"}
    now = (await admin.by_id())["ollama/llama3.2:latest"]
    assert now.loaded and now.HasField("unload_time") and now.loaded_size_bytes == 10400
    await admin.stub.UnloadProviderModel(
        models_pb2.UnloadProviderModelRequest(name="ollama/llama3.2:latest"), metadata=admin.md()
    )
    assert ollama.loaded == set() and not (await admin.by_id())["ollama/llama3.2:latest"].loaded
    unload = [s.body for s in ollama.seen if s.path == "/api/generate"][-1]
    assert unload and unload["model"] == "llama3.2:latest" and unload["keep_alive"] == 0 and "prompt" not in unload
    assert admin.actions("load", "ok") == 1 and admin.actions("unload", "ok") == 1


async def test_show_names_and_failures(ai: Any) -> None:
    _, admin = await admin_of(ai)
    shown = await admin.stub.GetProviderModel(
        models_pb2.GetProviderModelRequest(name="ollama/llama3.2"), metadata=admin.md()
    )
    assert "temperature 0.6" in shown.provider_model.parameters and shown.provider_model.license
    assert shown.provider_model.context_length == 131072 and shown.provider_model.size_bytes == 2019393189
    assert shown.provider_model.model_id == "ollama/llama3.2:latest"  # Ollama's own form of the name
    missing = await fails(
        admin.stub.GetProviderModel(models_pb2.GetProviderModelRequest(name="ollama/nosuch"), metadata=admin.md())
    )
    assert missing.code == grpc.StatusCode.NOT_FOUND and missing.reason == "MODEL_NOT_FOUND"
    for bad in ("llama3.2", "ollama/../etc", "ollama/a b", "providers/ollama/models/"):
        error = await fails(
            admin.stub.GetProviderModel(models_pb2.GetProviderModelRequest(name=bad), metadata=admin.md())
        )
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert "name" in error.violations(), bad
    nobody = await fails(
        admin.stub.GetProviderModel(models_pb2.GetProviderModelRequest(name="nosuch/model"), metadata=admin.md())
    )
    assert nobody.code == grpc.StatusCode.NOT_FOUND and nobody.reason == "PROVIDER_NOT_FOUND"


HOSTILE = [
    "/",
    "ollama/",
    "\x00",
    "ollama/\u202ellama",
    "ollama/a:" + "b" * 90,
    "providers/-/models/x",
    "providers/ollama/models/" + "a" * 270,
    "ollama/hf.co/a/b/c/d",
    "ollama/-x",
    "x" * 301,
]


async def test_hostile_names_are_refused_not_internal(ai: Any, ollama: FakeOllama) -> None:
    _, admin = await admin_of(ai)
    for name in HOSTILE:
        for call in (
            admin.stub.GetProviderModel(models_pb2.GetProviderModelRequest(name=name), metadata=admin.md()),
            admin.stub.DeleteProviderModel(models_pb2.DeleteProviderModelRequest(name=name), metadata=admin.md()),
            admin.stub.LoadProviderModel(models_pb2.LoadProviderModelRequest(name=name), metadata=admin.md()),
            admin.stub.UnloadProviderModel(models_pb2.UnloadProviderModelRequest(name=name), metadata=admin.md()),
        ):
            error = await fails(call)
            assert error.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), (name, error)
        pulled = await pull_fails(admin.pull(name))
        assert pulled.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), (name, pulled)
    for parent in ("providers/", "providers/a/b", "ollama", "providers/nosuch"):
        error = await fails(
            admin.stub.ListProviderModels(models_pb2.ListProviderModelsRequest(parent=parent), metadata=admin.md())
        )
        assert error.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), parent
    assert not [s for s in ollama.seen if s.method != "GET"]  # nothing hostile reached Ollama


async def test_pull_streams_progress_and_is_audited(
    ai: Any, ollama: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    _, admin = await admin_of(ai)
    caplog.set_level(logging.INFO, "pynode.audit")
    steps = [step async for step in admin.pull("ollama/smollm2:135m")]
    assert steps[0].status == "pulling manifest"
    layers = [s for s in steps if s.digest]
    assert layers and all(s.status == f"pulling {s.digest[7:19]}" for s in layers)
    first = [s for s in layers if s.digest == layers[0].digest]
    assert [s.completed_bytes for s in first] == [1333, 2666, 4000] and {s.total_bytes for s in first} == {4000}
    assert [s.status for s in steps[-3:]] == ["verifying sha256 digest", "writing manifest", "success"]
    last = steps[-1]
    assert last.done and last.provider_model.model_id == "ollama/smollm2:135m"
    assert not any(s.done for s in steps[:-1])
    assert "ollama/smollm2:135m" in await admin.by_id()
    assert admin.actions("pull", "ok") == 1
    audit = [r for r in caplog.records if getattr(r, "audit_kind", "") == "model.pulled"]
    assert audit and audit[0].subject == "ollama/smollm2:135m"  # type: ignore[attr-defined]
    assert audit[0].actor == admin.user_id  # type: ignore[attr-defined]
    # The same event in auth's audit trail, which ListAuditEvents (and the web app's audit log) reads.
    await admin.parts.model_admin.audit.flush()
    trail = await admin.client.admin.ListAuditEvents(
        auth_pb2.ListAuditEventsRequest(kind="ai.model.pulled"), metadata=admin.md()
    )
    assert [(e.actor, e.details["model"]) for e in trail.events] == [(admin.user_id, "ollama/smollm2:135m")]
    assert trail.events[0].client_address == admin.client.address


async def test_pull_failures_map_to_statuses(ai: Any, ollama: FakeOllama) -> None:
    _, admin = await admin_of(ai)
    missing = await pull_fails(admin.pull("ollama/nosuch:1b"))
    assert missing.code == grpc.StatusCode.NOT_FOUND and missing.reason == "MODEL_NOT_FOUND"
    bad = await pull_fails(admin.pull("ollama/bad name"))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and "name" in bad.violations()
    ollama.pull_error = "max retries exceeded: dial tcp: lookup registry.ollama.ai: no such host"
    broken = await pull_fails(admin.pull("ollama/smollm2:135m"))
    assert broken.code == grpc.StatusCode.UNAVAILABLE and "no such host" in broken.message
    refused = await pull_fails(admin.pull("openai/gpt-4o"))
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION and refused.reason == "ACTION_NOT_SUPPORTED"
    assert admin.actions("pull", "failed") == 4


async def test_cancelling_a_pull_closes_the_download(ai: Any, ollama: FakeOllama) -> None:
    _, admin = await admin_of(ai)
    ollama.pull_delay = 0.2
    call = admin.pull("ollama/smollm2:135m")
    first = await call.read()
    assert first.status == "pulling manifest"
    call.cancel()
    await eventually(lambda: ollama.pull_disconnects == 1)
    assert "smollm2:135m" not in ollama.stored and ollama.pulls_completed == 0
    await eventually(lambda: admin.actions("pull", "cancelled") == 1)
    # The model is free to be pulled again at once.
    ollama.pull_delay = 0
    assert [s async for s in admin.pull("ollama/smollm2:135m")][-1].done


async def test_one_pull_per_model_at_once(ai: Any, ollama: FakeOllama) -> None:
    _, admin = await admin_of(ai)
    ollama.pull_delay = 0.2
    running = admin.pull("ollama/smollm2:135m")
    await running.read()
    again = await pull_fails(admin.pull("ollama/smollm2:135m"))
    assert again.code == grpc.StatusCode.FAILED_PRECONDITION and again.reason == "PULL_IN_PROGRESS"
    running.cancel()


async def test_delete_and_its_failures(ai: Any, ollama: FakeOllama) -> None:
    _, admin = await admin_of(ai)
    delete = admin.stub.DeleteProviderModel
    await delete(models_pb2.DeleteProviderModelRequest(name="ollama/llama3.2"), metadata=admin.md())
    assert "llama3.2:latest" not in ollama.stored
    assert [s.body for s in ollama.seen if s.method == "DELETE"] == [{"model": "llama3.2"}]
    again = await fails(delete(models_pb2.DeleteProviderModelRequest(name="ollama/llama3.2"), metadata=admin.md()))
    assert again.code == grpc.StatusCode.NOT_FOUND
    builtin = await fails(delete(models_pb2.DeleteProviderModelRequest(name="builtin/echo"), metadata=admin.md()))
    assert builtin.code == grpc.StatusCode.FAILED_PRECONDITION
    assert admin.actions("delete", "ok") == 1 and admin.actions("delete", "failed") == 2
    unload = await fails(
        admin.stub.UnloadProviderModel(
            models_pb2.UnloadProviderModelRequest(name="ollama/llama3.2"), metadata=admin.md()
        )
    )
    assert unload.code == grpc.StatusCode.NOT_FOUND


async def test_an_ollama_that_is_down(ai: Any, ollama: FakeOllama) -> None:
    _, admin = await admin_of(ai)
    await ollama.stop()
    listed = await admin.models()
    assert list(listed.unreachable) == ["providers/ollama"]
    assert "builtin/echo" in {m.model_id for m in listed.provider_models}
    down = await pull_fails(admin.pull("ollama/smollm2:135m"))
    assert down.code == grpc.StatusCode.UNAVAILABLE and down.reason == "PROVIDER_UNAVAILABLE"
    gone = await fails(
        admin.stub.DeleteProviderModel(models_pb2.DeleteProviderModelRequest(name="ollama/x"), metadata=admin.md())
    )
    assert gone.code == grpc.StatusCode.UNAVAILABLE


async def test_pull_over_grpcurl(ai: Any, ollama: FakeOllama, grpcurl: str) -> None:
    user, admin = await admin_of(ai)
    headers = [flag for key, value in admin.md() for flag in ("-H", f"{key}: {value}")]
    process = await asyncio.create_subprocess_exec(
        grpcurl,
        "-plaintext",
        *headers,
        "-d",
        json.dumps({"name": "ollama/smollm2:135m"}),
        f"127.0.0.1:{user.mesh.port}",
        "devpynode.ai.v1.ModelAdminService/PullProviderModel",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    steps = [json.loads(chunk) for chunk in out.decode().replace("}\n{", "}\x00{").split("\x00")]
    assert steps[0] == {"status": "pulling manifest"}
    assert any(s.get("completedBytes") == "4000" and s.get("totalBytes") == "4000" for s in steps)
    assert steps[-1]["done"] and steps[-1]["providerModel"]["modelId"] == "ollama/smollm2:135m"


async def test_the_fake_speaks_as_the_ollama_client_expects(ollama: FakeOllama) -> None:
    """The official client parses every answer of the fake (fidelity of the wire format)."""
    client = ollama_client.AsyncClient(host=ollama.url)
    try:
        tags = await client.list()
        assert [m.model for m in tags.models] == ["llama3.2:latest"] and tags.models[0].size == 2019393189
        shown = await client.show("llama3.2")
        assert shown.details and shown.details.quantization_level == "Q4_K_M"
        assert shown.modelinfo and shown.modelinfo["llama.context_length"] == 131072
        assert shown.capabilities == ["completion", "tools"] and shown.modified_at is not None
        loaded = await client.generate(model="llama3.2")
        assert loaded.done and loaded.done_reason == "load"
        running = await client.ps()
        assert running.models[0].size_vram == 5200 and running.models[0].expires_at is not None
        assert running.models[0].context_length == 4096
        progress = [p async for p in await client.pull("smollm2:135m", stream=True)]
        assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
        assert any(p.total and p.completed == p.total for p in progress)
        assert (await client.pull("llama3.2")).status == "success"  # not streamed: the last line only
        with pytest.raises(ollama_client.ResponseError) as missing:
            [p async for p in await client.pull("nosuch", stream=True)]
        assert "file does not exist" in str(missing.value.error)
        with pytest.raises(ollama_client.ResponseError) as invalid:
            await client.pull("bad name")
        assert invalid.value.status_code == 400
        assert (await client.delete("smollm2:135m")).status == "success"
        with pytest.raises(ollama_client.ResponseError) as gone:
            await client.delete("smollm2:135m")
        assert gone.value.status_code == 404
        unloaded = await client.generate(model="llama3.2", keep_alive=0)
        assert unloaded.done_reason == "unload" and not (await client.ps()).models
    finally:
        await client.close()  # type: ignore[no-untyped-call]
    await asyncio.sleep(0)
