"""Attachments: only your own files, readable by members through chat only, text given to the model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from devpynode.chat.v1 import chat_pb2
from devpynode.files.v1 import files_pb2, files_pb2_grpc

from tests.ai.fakes import FakeProvider
from tests.chat.conftest import Member, Start
from tests.client import fails

NOTES = b"# Meeting notes\n\nThe launch moves to Thursday.\n"


def _requests(name: str, data: bytes) -> Iterator[files_pb2.UploadFileRequest]:
    yield files_pb2.UploadFileRequest(metadata=files_pb2.FileMetadata(filename=name, content_type="text/markdown"))
    yield files_pb2.UploadFileRequest(chunk=data)


async def upload(member: Member, name: str, data: bytes) -> files_pb2.File:
    stub = files_pb2_grpc.FileServiceStub(member.user.channel)
    response = await stub.UploadFile(_requests(name, data), metadata=member.md)
    return response.file


async def download(member: Member, conversation_id: str, message_id: str, file_id: str) -> tuple[Any, bytes]:
    request = chat_pb2.DownloadAttachmentRequest(
        conversation_id=conversation_id, message_id=message_id, file_id=file_id
    )
    parts = [p async for p in member.stub.DownloadAttachment(request, metadata=member.md)]
    assert parts[0].WhichOneof("data") == "attachment"
    return parts[0].attachment, b"".join(p.chunk for p in parts[1:])


async def test_members_read_attachments_through_chat_and_the_model_reads_text_ones(
    chat: Start, ollama: FakeProvider
) -> None:
    alice, bob, mallory = await chat(3)
    conversation = await alice.create()
    await alice.invite(conversation.id, bob)
    notes = await upload(alice, "notes.md", NOTES)
    sent = await alice.send(conversation.id, "summarise the notes", attachment_file_ids=[notes.id])
    attached = sent.user_message.attachments
    assert [(a.file_id, a.filename, a.size_bytes) for a in attached] == [(notes.id, "notes.md", len(NOTES))]
    assert list(sent.user_message.attachment_file_ids) == [notes.id]
    # The model got the file's text with its name, before the question.
    body = ollama.chats[-1].body
    assert body is not None
    prompt = body["messages"][-1]["content"]
    assert "notes.md" in prompt and "The launch moves to Thursday." in prompt
    assert prompt.endswith("summarise the notes")
    # Bob, a member, downloads it through chat...
    meta, data = await download(bob, conversation.id, sent.user_message.id, notes.id)
    assert data == NOTES and meta.filename == "notes.md"
    # ...but the files service still shows it to its owner only.
    files = files_pb2_grpc.FileServiceStub(bob.user.channel)
    hidden = await fails(files.GetFile(files_pb2.GetFileRequest(file_id=notes.id), metadata=bob.md))
    assert hidden.code == grpc.StatusCode.NOT_FOUND
    # Outsiders get nothing, and a file not attached to that message is not served.
    outsider = await fails(download(mallory, conversation.id, sent.user_message.id, notes.id))
    assert outsider.code == grpc.StatusCode.NOT_FOUND
    other = await upload(alice, "other.md", b"# other\n")
    unattached = await fails(download(bob, conversation.id, sent.user_message.id, other.id))
    assert unattached.code == grpc.StatusCode.NOT_FOUND and unattached.reason == "ATTACHMENT_NOT_FOUND"


async def test_only_your_own_files_can_be_attached(chat: Start) -> None:
    alice, bob = await chat(2)
    conversation = await alice.create(model="builtin/echo")
    await alice.invite(conversation.id, bob)
    alices = await upload(alice, "mine.md", NOTES)
    refused = await fails(bob.send(conversation.id, "look", attachment_file_ids=[alices.id]))
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.violations() == {"attachment_file_ids[0]": "INVALID_FIELD"}
    twice = await fails(alice.send(conversation.id, "look", attachment_file_ids=[alices.id, alices.id]))
    assert twice.code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(await alice.messages(conversation.id)) == 0  # nothing half-sent
