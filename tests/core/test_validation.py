"""Validation declared in the contracts, enforced before any handler runs."""

from __future__ import annotations

import grpc
import pytest
from devpynode.auth.v1 import auth_pb2
from devpynode.files.v1 import files_pb2
from google.rpc import error_details_pb2

from pynode.core.contract import validate
from pynode.core.errors import InvalidArgument
from tests.client import MeshClient, fails


def _violations(message: object) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as raised:
        validate(message)  # type: ignore[arg-type]
    return {v.field: v.reason for v in raised.value.violations}


def test_rules_cover_required_length_format_and_bytes() -> None:
    found = _violations(auth_pb2.RegisterRequest(email="not-an-email", password="short", display_name=" "))
    assert found == {"email": "BAD_FORMAT", "password": "TOO_SHORT", "display_name": "REQUIRED"}
    assert _violations(auth_pb2.LoginRequest(email="a@b.co", password="p" * 257)) == {"password": "TOO_LONG"}
    assert _violations(auth_pb2.RevokeSessionRequest(session_id="12")) == {"session_id": "BAD_FORMAT"}


def test_rules_reach_into_nested_messages_and_integers() -> None:
    request = files_pb2.CreateUploadSessionRequest(
        metadata=files_pb2.FileMetadata(filename="", content_type="text/plain", size_bytes=-1)
    )
    assert _violations(request) == {"metadata.filename": "REQUIRED", "metadata.size_bytes": "OUT_OF_RANGE"}
    assert _violations(files_pb2.CreateUploadSessionRequest()) == {"metadata": "REQUIRED"}
    assert _violations(auth_pb2.ListUsersRequest(page_size=5000)) == {"page_size": "OUT_OF_RANGE"}


def test_valid_message_passes() -> None:
    validate(auth_pb2.RegisterRequest(email="a@b.co", password="long enough pw", display_name="A"))


async def test_invalid_request_gets_bad_request_details_over_the_wire(client: MeshClient) -> None:
    error = await fails(
        client.auth.Register(
            auth_pb2.RegisterRequest(email="x", password="", display_name="d" * 101), metadata=client.md("")
        )
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.violations() == {"email": "BAD_FORMAT", "password": "REQUIRED", "display_name": "TOO_LONG"}
    info = error.detail(error_details_pb2.ErrorInfo)
    assert info.domain == "devpynode.dev" and info.reason == "INVALID_ARGUMENT"


async def test_malformed_utf8_is_refused_by_the_protocol(client: MeshClient) -> None:
    # A string field with invalid UTF-8 cannot be parsed: the server refuses, it does not crash.
    raw = b"\x0a\x03\xff\xfe\xfd"  # field 1 (email), 3 bytes of invalid UTF-8
    call = client.channel.unary_unary(
        "/devpynode.auth.v1.AuthService/Login", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    error = await fails(call(raw, metadata=client.md("")))
    assert error.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNKNOWN)
