"""Pictures in prompts: checked from their bytes, sent in each wire format to vision models, refused by others."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from devpynode.ai.v1 import ai_pb2
from devpynode.files.v1 import files_pb2, files_pb2_grpc

from tests.ai.conftest import AIClient, Answer, routing_file
from tests.ai.fakes import FakeProvider
from tests.ai.pictures import png
from tests.client import MeshClient, rich_error

PICTURE = png()


def _routing(tmp_path: Path, openai: FakeProvider, ollama: FakeProvider) -> str:
    return routing_file(
        tmp_path,
        f"""
        providers:
          eyes: {{type: openai, url: "{openai.url}", models: [gpt-test], capabilities: {{"gpt-*": [vision]}}}}
          lens: {{type: ollama, url: "{ollama.url}", capabilities: {{"llama*": [vision, tools]}}}}
        """,
    )


def _request(model: str, *images: ai_pb2.Image) -> ai_pb2.GenerateRequest:
    message = ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_USER, content="what is this?", images=list(images))
    return ai_pb2.GenerateRequest(model=model, messages=[message], options=ai_pb2.GenerateOptions(no_cache=True))


async def _ask(client: AIClient, request: ai_pb2.GenerateRequest) -> Answer:
    pieces = [p async for p in client.stub.Generate(request, metadata=client.user.md(), timeout=30)]
    return Answer("".join(p.text for p in pieces), pieces)


async def _refused(client: AIClient, request: ai_pb2.GenerateRequest) -> Any:
    try:
        await _ask(client, request)
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        return rich_error(error)
    raise AssertionError("the request was accepted")


async def test_vision_models_get_image_parts_in_their_wire_format(
    ai: Any, openai: FakeProvider, ollama: FakeProvider, tmp_path: Path
) -> None:
    client: AIClient = await ai(ai_config=_routing(tmp_path, openai, ollama))
    listed = (await client.stub.ListModels(ai_pb2.ListModelsRequest(), metadata=client.user.md())).models
    assert ai_pb2.MODEL_CAPABILITY_VISION in next(m for m in listed if m.id == "eyes/gpt-test").capabilities
    encoded = base64.b64encode(PICTURE).decode()
    answer = await _ask(client, _request("eyes/gpt-test", ai_pb2.Image(data=PICTURE)))
    assert answer.text == "Hello from the fake model."
    sent = (openai.chats[-1].body or {})["messages"]
    assert sent == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}},
            ],
        }
    ]
    await _ask(client, _request("lens/llama3.2:latest", ai_pb2.Image(data=PICTURE), ai_pb2.Image(data=PICTURE)))
    sent = (ollama.chats[-1].body or {})["messages"]
    assert sent == [{"role": "user", "content": "what is this?", "images": [encoded, encoded]}]


async def test_pictures_are_refused_by_text_models_and_when_not_pictures_or_too_large(
    ai: Any, openai: FakeProvider, ollama: FakeProvider, tmp_path: Path
) -> None:
    client: AIClient = await ai(ai_config=_routing(tmp_path, openai, ollama), ai_max_image_bytes=4096)
    chats = len(openai.chats) + len(ollama.chats)
    for model in ("openai/gpt-test", "ollama/llama3.2:latest"):
        refused = await _refused(client, _request(model, ai_pb2.Image(data=PICTURE)))
        assert refused.reason == "VISION_NOT_SUPPORTED" and refused.violations() == {"messages": "VISION_NOT_SUPPORTED"}
        assert f"{model} cannot see images" in refused.message
    assert len(openai.chats) + len(ollama.chats) == chats  # no provider was called
    text = await _refused(client, _request("eyes/gpt-test", ai_pb2.Image(data=b"GIF8 not really a picture")))
    assert text.violations() == {"messages[0].images[0]": "NOT_AN_IMAGE"}
    big = await _refused(client, _request("eyes/gpt-test", ai_pb2.Image(data=png(padding=5000))))
    assert big.violations() == {"messages[0].images[0]": "TOO_LARGE"} and big.reason == "IMAGE_TOO_LARGE"
    assistant = ai_pb2.GenerateRequest(
        model="eyes/gpt-test",
        messages=[
            ai_pb2.ChatMessage(role=ai_pb2.MESSAGE_ROLE_ASSISTANT, content="x", images=[ai_pb2.Image(data=PICTURE)])
        ],
    )
    assert "messages[0].images" in (await _refused(client, assistant)).violations()


def _upload(data: bytes) -> Iterator[files_pb2.UploadFileRequest]:
    yield files_pb2.UploadFileRequest(metadata=files_pb2.FileMetadata(filename="red.png", content_type="image/png"))
    yield files_pb2.UploadFileRequest(chunk=data)


async def test_pictures_by_file_id_are_read_for_the_caller_only(ai: Any, strict: Any) -> None:
    client: AIClient = await ai()
    files = files_pb2_grpc.FileServiceStub(client.user.channel)
    stored = (await files.UploadFile(_upload(PICTURE), metadata=client.user.md())).file
    answer = await _ask(client, _request("builtin/echo", ai_pb2.Image(file_id=stored.id)))
    assert answer.text == f"what is this? [image/png {len(PICTURE)} bytes]"
    other = MeshClient(client.user.channel)
    await other.register()
    try:
        await _ask(AIClient(other, client.mesh), _request("builtin/echo", ai_pb2.Image(file_id=stored.id)))
        raise AssertionError("another user's file was read")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_a_file_named_many_times_is_held_once_and_all_pictures_are_bounded_together(ai: Any, strict: Any) -> None:
    # An outside attack made one 2 kB request hold 16 copies of a 4 MiB picture for a whole generation.
    picture = png(padding=4000)
    client: AIClient = await ai(ai_max_request_image_bytes=2 * len(picture) + 10)
    files = files_pb2_grpc.FileServiceStub(client.user.channel)
    stored = (await files.UploadFile(_upload(picture), metadata=client.user.md())).file
    again = [ai_pb2.Image(file_id=stored.id)] * 8
    answer = await _ask(client, _request("builtin/echo", *again))  # one file, read and counted once
    assert answer.text.count(f"[image/png {len(picture)} bytes]") == 8
    inline = [ai_pb2.Image(data=picture)] * 2
    details = await _refused(client, _request("builtin/echo", ai_pb2.Image(file_id=stored.id), *inline))
    assert details.violations() == {"messages.images": "TOO_LARGE"}
    assert details.reason == "IMAGES_TOO_LARGE"
