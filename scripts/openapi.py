"""Writes the REST API's OpenAPI 2.0 description from the contracts' `google.api.http` annotations.

Debian's `protoc-gen-swagger` (golang-grpc-gateway) does the per-package work; it predates proto3 `optional`, so
this script also stands in as a protoc plugin (`--plugin` mode) that runs it and declares the feature (the
generator treats optional fields as plain ones, which is what their JSON is). The packages' documents are then
merged into one, with bearer authentication declared, and the two plain-HTTP paths for a file's bytes (served
by the door, not transcoded: services/pynode/door/file_bytes.py) added by hand. Usage: `openapi.py OUT_FILE`
(from scripts/generate).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf.compiler import plugin_pb2

SWAGGER = "/usr/bin/protoc-gen-swagger"
PACKAGES = ("auth", "ai", "chat", "files")


def plugin() -> None:
    """protoc plugin mode: run protoc-gen-swagger on the same request, then declare proto3 optional support."""
    request = sys.stdin.buffer.read()
    found = shutil.which("protoc-gen-swagger") or SWAGGER
    answer = subprocess.run([found], input=request, capture_output=True, check=True).stdout
    response = plugin_pb2.CodeGeneratorResponse.FromString(answer)
    response.supported_features |= plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    sys.stdout.buffer.write(response.SerializeToString())


_STATUS = {
    "type": "object",
    "properties": {
        "code": {"type": "integer", "format": "int32"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
}
_BYTES = {"type": "string", "format": "binary"}
_ERROR = {"description": "A google.rpc.Status, as every REST error.", "schema": _STATUS}
# The door's plain-HTTP file bytes (not annotated RPCs: the body is the file, not JSON).
FILE_BYTES_PATHS: dict[str, Any] = {
    "/download/v1/files/{file_id}": {
        "get": {
            "summary": "Downloads a file's bytes as they are (not base64): one `Range` (206 Partial Content; "
            "416 past the end; several ranges: the whole file), `ETag` (its SHA-256) with `If-None-Match` (304) "
            "and `If-Range`, `Content-Type` the stored type, `Content-Disposition` attachment unless safe inline.",
            "operationId": "DownloadFileBytes",
            "produces": ["application/octet-stream"],
            "parameters": [
                {"name": "file_id", "description": "File id.", "in": "path", "required": True, "type": "string"},
                {"name": "Range", "description": "e.g. `bytes=0-1023`, `bytes=1024-`, `bytes=-1024`.",
                 "in": "header", "required": False, "type": "string"},
                {"name": "If-None-Match", "description": "An ETag seen before: 304 when unchanged.",
                 "in": "header", "required": False, "type": "string"},
            ],
            "responses": {
                "200": {"description": "The whole file.", "schema": _BYTES},
                "206": {"description": "The range asked for, with Content-Range.", "schema": _BYTES},
                "304": {"description": "Not modified (If-None-Match)."},
                "416": _ERROR,
                "default": _ERROR,
            },
            "tags": ["FileService"],
        }
    },
    "/upload/v1/files": {
        "post": {
            "summary": "Uploads a file whose bytes are the request body, streamed (as UploadFile: the same quota, "
            "size limit, type check and scan; Content-Length, when sent, is checked against the quota first). "
            "A client that hangs up stores nothing.",
            "operationId": "UploadFileBytes",
            "consumes": ["application/octet-stream"],
            "parameters": [
                {"name": "filename", "description": "File name (or `Content-Disposition: attachment; filename=`).",
                 "in": "query", "required": True, "type": "string"},
                {"name": "contentType", "description": "Declared type; default the request's Content-Type.",
                 "in": "query", "required": False, "type": "string"},
                {"name": "sha256", "description": "Expected SHA-256, lowercase hex.", "in": "query",
                 "required": False, "type": "string"},
                {"name": "body", "in": "body", "required": True, "schema": _BYTES},
            ],
            "responses": {
                "200": {"description": "The stored file.", "schema": {"$ref": "#/definitions/v1UploadFileResponse"}},
                "default": _ERROR,
            },
            "tags": ["FileService"],
        }
    },
}  # fmt: skip


def _methods(root: Path, googleapis: Path, work: str) -> dict[tuple[str, str], tuple[str, bool]]:
    """(service, method) -> (its comment, callable without a token), read from the contracts with source info.

    protoc-gen-swagger gives an RPC the comment of the same-numbered RPC of another service of its file (Register
    came out as "ListUsers lists accounts"), and knows nothing of the access option: both are set from here."""
    from devpynode.common.v1 import options_pb2  # registers the access option, so it parses as itself
    from google.protobuf import descriptor_pb2

    protos = sorted(str(p.relative_to(root / "proto")) for p in (root / "proto" / "devpynode").rglob("*.proto"))
    target = Path(work) / "contracts.binpb"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(root / "proto"), "-I", str(googleapis),
         "--include_source_info", f"--descriptor_set_out={target}", *protos],
        check=True,
    )  # fmt: skip
    found: dict[tuple[str, str], tuple[str, bool]] = {}
    for file in descriptor_pb2.FileDescriptorSet.FromString(target.read_bytes()).file:
        comments = {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location}
        for i, service in enumerate(file.service):
            for j, method in enumerate(service.method):
                text = " ".join(line.strip() for line in comments.get((6, i, 2, j), "").splitlines()).strip()
                anonymous = method.options.Extensions[options_pb2.access] == options_pb2.ACCESS_ANONYMOUS
                found[(service.name, method.name)] = (text, anonymous)
    return found


def _correct(paths: dict[str, Any], methods: dict[tuple[str, str], tuple[str, bool]]) -> None:
    for operations in paths.values():
        for operation in operations.values():
            service = (operation.get("tags") or [""])[0]
            known = methods.get((service, operation.get("operationId", "")))
            if known is None:
                continue
            comment, anonymous = known
            operation["summary"] = comment
            operation.pop("description", None)
            if anonymous:
                operation["security"] = []  # no token needed (Register, Login, the JWKS)


def generate(out: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    import google.rpc.error_details_pb2 as details

    googleapis = Path(details.__file__).parent.parent.parent
    merged: dict[str, Any] = {
        "swagger": "2.0",
        "info": {
            "title": "Dev-PyNode REST API",
            "version": "v1",
            "description": "REST/JSON over every RPC a browser may call, transcoded by the gateway (Envoy) from "
            "the gRPC contracts, and a file's bytes over plain HTTP (`/download/`, `/upload/`). Authenticate with "
            "`Authorization: Bearer <access token or personal API key>`. A query parameter may not name a field "
            "the path binds, nor repeat a single-valued one (400).",
        },
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {"bearer": {"type": "apiKey", "name": "Authorization", "in": "header"}},
        "security": [{"bearer": []}],
        "tags": [],
        "paths": {},
        "definitions": {},
    }
    with tempfile.TemporaryDirectory() as work:
        for package in PACKAGES:
            protos = sorted(
                str(p.relative_to(root / "proto")) for p in (root / "proto" / "devpynode" / package).rglob("*.proto")
            )
            subprocess.run(
                [sys.executable, "-m", "grpc_tools.protoc", "-I", str(root / "proto"), "-I", str(googleapis),
                 f"--plugin=protoc-gen-swagger={Path(__file__).resolve().parent / 'openapi-plugin'}",
                 f"--swagger_out=allow_merge=true,merge_file_name={package}:{work}", *protos],
                check=True,
            )  # fmt: skip
            document = json.loads((Path(work) / f"{package}.swagger.json").read_text())
            merged["tags"] += document.get("tags", [])
            merged["paths"].update(document.get("paths", {}))
            merged["definitions"].update(document.get("definitions", {}))
        _correct(merged["paths"], _methods(root, googleapis, work))
    merged["paths"].update(FILE_BYTES_PATHS)
    merged["paths"] = dict(sorted(merged["paths"].items()))
    merged["definitions"] = dict(sorted(merged["definitions"].items()))
    out.write_text(json.dumps(merged, indent=2, sort_keys=False) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 1:
        plugin()
    else:
        generate(Path(sys.argv[1]))
