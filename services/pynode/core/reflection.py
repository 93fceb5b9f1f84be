"""Server reflection that serves our contracts with their comments, so `grpcurl describe` documents them.

Python's descriptor pool drops comments (source info); the generate script keeps a
descriptor set that has them, and this servicer swaps those files in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from functools import cache
from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

SERVICE_NAME = "grpc.reflection.v1alpha.ServerReflection"


@cache
def documented_files() -> dict[str, bytes]:
    """Serialized FileDescriptorProtos with source info, by file name."""
    raw = resources.files("devpynode").joinpath("descriptors.binpb").read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(raw).file
    return {f.name: f.SerializeToString() for f in files}


class DocumentedReflectionServicer(ReflectionServicer):  # type: ignore[misc]
    """grpcio-reflection's servicer with comment-bearing descriptors for our files."""

    async def ServerReflectionInfo(
        self, request_iterator: AsyncIterator[reflection_pb2.ServerReflectionRequest], context: Any
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        documented = documented_files()
        async for response in super().ServerReflectionInfo(request_iterator, context):
            if response.HasField("file_descriptor_response"):
                files = response.file_descriptor_response.file_descriptor_proto
                for i, raw in enumerate(files):
                    name = descriptor_pb2.FileDescriptorProto.FromString(raw).name
                    files[i] = documented.get(name, raw)
            yield response


def servicer(service_names: Iterable[str]) -> DocumentedReflectionServicer:
    """Reflection for `service_names` (and itself), to mount with `reflection_pb2_grpc`."""
    return DocumentedReflectionServicer([*service_names, SERVICE_NAME])


add_to_server = reflection_pb2_grpc.add_ServerReflectionServicer_to_server
