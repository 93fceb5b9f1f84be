"""Writes the REST API's OpenAPI 2.0 description from the contracts' `google.api.http` annotations.

Debian's `protoc-gen-swagger` (golang-grpc-gateway) does the per-package work; it predates proto3 `optional`, so
this script also stands in as a protoc plugin (`--plugin` mode) that runs it and declares the feature (the
generator treats optional fields as plain ones, which is what their JSON is). The packages' documents are then
merged into one, with bearer authentication declared. Usage: `openapi.py OUT_FILE` (from scripts/generate).
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
            "the gRPC contracts. Authenticate with `Authorization: Bearer <access token>`.",
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
    merged["paths"] = dict(sorted(merged["paths"].items()))
    merged["definitions"] = dict(sorted(merged["definitions"].items()))
    out.write_text(json.dumps(merged, indent=2, sort_keys=False) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 1:
        plugin()
    else:
        generate(Path(sys.argv[1]))
