"""REST/JSON for every RPC browsers may call: Envoy's gRPC-JSON transcoder, driven by the `google.api.http`
annotations on the contracts (AIP-style paths: `GET /v1/files/{file_id}`, `POST /v1/conversations/{id}/messages`).

The transcoder turns a REST request into the gRPC call the annotation names, then the same routes, limits and
services answer it; errors come back as JSON `google.rpc.Status` with the matching HTTP status
(`convert_grpc_status`), unknown query parameters are refused, and server streams arrive as newline-delimited
JSON. The descriptor set (with its imports) is embedded in the configuration, so the generated file is whole on
a laptop, in compose and in Helm alike.

The transcoder lets a query parameter set any field, even one the path binds (`GET /v1/files/A:download?fileId=B`
read B), and a scalar given twice takes its last value. `query_refusals` answers both with 400 before any
service sees them: per RPC, a route on the transcoded path that matches the original REST path (Envoy keeps it
in `x-envoy-original-path`) when its query names a path-bound field or repeats a scalar one, and one route for
a percent-escaped query name (the transcoder decodes names, so `file%5Fid` would slip past the names matched).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources
from typing import Any

from envoy_data_plane.envoy.config.route.v3 import DirectResponseAction, HeaderMatcher, Route, RouteMatch
from envoy_data_plane.envoy.extensions.filters.http.grpc_json_transcoder.v3 import (
    GrpcJsonTranscoder,
    GrpcJsonTranscoderPrintOptions,
    GrpcJsonTranscoderRequestValidationOptions,
)
from envoy_data_plane.envoy.type.matcher.v3 import RegexMatcher, StringMatcher
from google.api import annotations_pb2  # type: ignore[import-untyped]
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor

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


ORIGINAL_PATH = "x-envoy-original-path"  # the REST path, as the transcoder found it (it rewrites `:path`)
_PATH_VARIABLE = re.compile(r"\{([a-z0-9_.]+)(?:=[^}]*)?\}")
# A query name with a percent escape in it: `?a=1&file%5Fid=B`.
_ESCAPED_NAME = r"[^?]*\?(?:[^&]*&)*[^=&]*%.*"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _spellings(field: str) -> str:
    """A field's query names as a regex alternative: `file_id` and `fileId` (nested: `a.b_c`, `a.bC`)."""
    names = {field, ".".join(_camel(part) for part in field.split("."))}
    return "|".join(re.escape(n) for n in sorted(names))


def _rules(method: MethodDescriptor) -> list[Any]:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    return [rule, *rule.additional_bindings]


def _refused_queries(method: MethodDescriptor) -> list[str]:
    """Regexes (whole-value matches) of the REST paths, with their query, to refuse for `method`; one route each
    (Envoy refuses a regex whose RE2 program is over 100, a few alternatives)."""
    alternatives = []
    for rule in _rules(method):
        template = getattr(rule, rule.WhichOneof("pattern") or "get", "")
        if not isinstance(template, str):
            continue
        bound = _PATH_VARIABLE.findall(template)
        if bound:  # a query parameter naming a field the path binds (or one inside it)
            names = "|".join(_spellings(b) for b in bound)
            alternatives.append(rf"[^?]*\?(?:[^&]*&)*(?:{names})(?:[.=&].*)?")
        if rule.body == "*":
            continue  # every field not in the path is in the body: the query may name none
        scalars = [
            f.name
            for f in method.input_type.fields
            if not f.is_repeated
            and f.type != FieldDescriptor.TYPE_MESSAGE
            and f.name not in bound
            and f.name != rule.body
        ]
        for name in scalars:  # one scalar given twice
            spelled = _spellings(name)
            alternatives.append(rf"[^?]*\?(?:[^&]*&)*(?:{spelled})=[^&]*&(?:[^&]*&)*(?:{spelled})(?:[=&].*)?")
    return alternatives


def query_refusals(methods: Iterable[MethodDescriptor], answer: int = 400) -> list[Route]:
    """Routes, to put before the RPCs' own, that answer `answer` (the gateway's JSON 400) for a REST query that
    would override the path or repeat a scalar, and for a percent-escaped query name."""

    def refuse(path: RouteMatch) -> Route:
        return Route(match=path, direct_response=DirectResponseAction(status=answer))

    def original(regex: str) -> list[HeaderMatcher]:
        return [HeaderMatcher(name=ORIGINAL_PATH, string_match=StringMatcher(safe_regex=RegexMatcher(regex=regex)))]

    routes = [refuse(RouteMatch(prefix="/devpynode.", headers=original(_ESCAPED_NAME)))]
    for method in methods:
        full = f"/{method.containing_service.full_name}/{method.name}"
        routes += [refuse(RouteMatch(path=full, headers=original(regex))) for regex in _refused_queries(method)]
    return routes
