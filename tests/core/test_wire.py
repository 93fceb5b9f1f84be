"""Requests read straight from the wire (core.wire): the common shape without a copy, anything else exactly as
protobuf parses it."""

from __future__ import annotations

import pytest
from devpynode.files.v1 import files_pb2
from google.protobuf.message import DecodeError

from pynode.core.wire import LoneBytes, lone_bytes_parser

parse = lone_bytes_parser(files_pb2.UploadFileRequest, "chunk")


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 1024 * 1024])
def test_a_message_of_one_bytes_field_is_a_view_of_the_received_buffer(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    wire = files_pb2.UploadFileRequest(chunk=data).SerializeToString()
    parsed = parse(wire)
    assert isinstance(parsed, LoneBytes)
    assert parsed.name == "chunk"
    assert bytes(parsed.data) == data
    assert parsed.data.obj is wire  # no copy: a view of what gRPC received


def test_a_chunk_over_the_contracts_size_is_left_to_protobuf_and_the_contract_check() -> None:
    wire = files_pb2.UploadFileRequest(chunk=b"x" * (1024 * 1024 + 1)).SerializeToString()
    parsed = parse(wire)
    assert isinstance(parsed, files_pb2.UploadFileRequest)  # the edge's validation refuses it (TOO_LONG)
    assert len(parsed.chunk) == 1024 * 1024 + 1


@pytest.mark.parametrize(
    "wire",
    [
        files_pb2.UploadFileRequest(metadata=files_pb2.FileMetadata(filename="a.txt")).SerializeToString(),
        files_pb2.UploadFileRequest(chunk=b"abc").SerializeToString() + b"\x0a\x00",  # then metadata: the last wins
        files_pb2.UploadFileRequest(chunk=b"abc").SerializeToString() * 2,  # a repeated field: protobuf's merge
        files_pb2.UploadFileRequest(chunk=b"abc").SerializeToString() + b"\x98\x06\x01",  # an unknown field
        b"",
    ],
)
def test_every_other_message_is_protobufs_own_parse(wire: bytes) -> None:
    parsed = parse(wire)
    assert isinstance(parsed, files_pb2.UploadFileRequest)
    assert parsed == files_pb2.UploadFileRequest.FromString(wire)


@pytest.mark.parametrize("wire", [b"\x12\x05abc", b"\x12\xff\xff\xff\xff\xff\xff", b"\x12"])
def test_a_truncated_or_malformed_message_fails_as_protobuf_fails(wire: bytes) -> None:
    with pytest.raises(DecodeError):
        parse(wire)


def test_only_singular_bytes_fields_can_be_read_this_way() -> None:
    with pytest.raises(ValueError, match="not a singular bytes field"):
        lone_bytes_parser(files_pb2.UploadFileRequest, "metadata")
