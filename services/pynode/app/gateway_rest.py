"""REST/JSON for every RPC browsers may call: Envoy's gRPC-JSON transcoder, driven by the `google.api.http`
annotations on the contracts (AIP-style paths: `GET /v1/files/{file_id}`, `POST /v1/conversations/{id}/messages`).

The transcoder turns a REST request into the gRPC call the annotation names, then the same routes, limits and
services answer it; errors come back as JSON `google.rpc.Status` with the matching HTTP status
(`convert_grpc_status`), unknown query parameters are refused, and server streams arrive as newline-delimited
JSON. The descriptor set (with its imports) is embedded in the configuration, so the generated file is whole on
a laptop, in compose and in Helm alike.
"""

from __future__ import annotations

from importlib import resources

from envoy_data_plane.envoy.extensions.filters.http.grpc_json_transcoder.v3 import (
    GrpcJsonTranscoder,
    GrpcJsonTranscoderPrintOptions,
    GrpcJsonTranscoderRequestValidationOptions,
)

# A REST body is one JSON request message; 4 MiB holds a 1 MiB upload part in base64 with room (Envoy's buffer
# filter bounds the request at the same size). Unary answers are small; streams are not buffered.
MAX_BODY_BYTES = 4 * 1024 * 1024


def descriptor_set() -> bytes:
    """The contracts and their imports as a FileDescriptorSet (`scripts/generate` writes it)."""
    return resources.files("devpynode").joinpath("api.binpb").read_bytes()


def transcoder(service_names: list[str]) -> GrpcJsonTranscoder:
    """The transcoder for `service_names` (the services this gateway routes)."""
    return GrpcJsonTranscoder(
        proto_descriptor_bin=descriptor_set(),
        services=sorted(service_names),
        print_options=GrpcJsonTranscoderPrintOptions(
            always_print_primitive_fields=True,  # `0`, `false` and `""` are shown, as clients of JSON expect
            stream_newline_delimited=True,  # one JSON object per line, not one array that ends with the stream
        ),
        convert_grpc_status=True,
        request_validation_options=GrpcJsonTranscoderRequestValidationOptions(
            reject_unknown_query_parameters=True,  # `?pagesize=5` is a mistake to report, not to ignore
            reject_binding_body_field_collisions=True,  # a path id and a different body id: refused
        ),
        max_request_body_size=MAX_BODY_BYTES,
        max_response_body_size=MAX_BODY_BYTES,
    )
