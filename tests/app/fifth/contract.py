"""The fifth service's gRPC contract, built in code (no .proto file): `devpynode.fifth.v1.NoteService`.

Both RPCs are for services only (`ACCESS_SERVICE`): other services reach it as a peer, with their service
token. The file goes into the default descriptor pool, so the edge reads its access options and reflection
lists it like any generated contract.
"""

from __future__ import annotations

from typing import Any

from devpynode.common.v1 import options_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import ServiceDescriptor

PACKAGE = "devpynode.fifth.v1"
SERVICE_NAME = f"{PACKAGE}.NoteService"
_FILE = "devpynode/fifth/v1/fifth.proto"


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name=_FILE, package=PACKAGE, syntax="proto3", dependency=["devpynode/common/v1/options.proto"]
    )
    string, int64 = descriptor_pb2.FieldDescriptorProto.TYPE_STRING, descriptor_pb2.FieldDescriptorProto.TYPE_INT64
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    for name, fields in (
        ("AddNoteRequest", [("text", string)]),
        ("AddNoteResponse", [("id", int64)]),
        ("CountNotesRequest", []),
        ("CountNotesResponse", [("count", int64)]),
    ):
        message = proto.message_type.add(name=name)
        for number, (field, kind) in enumerate(fields, 1):
            message.field.add(name=field, number=number, type=kind, label=optional, json_name=field)
    service = proto.service.add(name="NoteService")
    for method in ("AddNote", "CountNotes"):
        added = service.method.add(
            name=method, input_type=f".{PACKAGE}.{method}Request", output_type=f".{PACKAGE}.{method}Response"
        )
        added.options.Extensions[options_pb2.access] = options_pb2.ACCESS_SERVICE
    return proto


def _pool_file() -> Any:
    pool = descriptor_pool.Default()
    try:
        return pool.FindFileByName(_FILE)
    except KeyError:
        return pool.Add(_file())


FILE = _pool_file()
SERVICE: ServiceDescriptor = FILE.services_by_name["NoteService"]


def message(name: str) -> Any:
    """The message class `devpynode.fifth.v1.<name>`."""
    return message_factory.GetMessageClass(FILE.message_types_by_name[name])


AddNoteRequest, AddNoteResponse = message("AddNoteRequest"), message("AddNoteResponse")
CountNotesRequest, CountNotesResponse = message("CountNotesRequest"), message("CountNotesResponse")
